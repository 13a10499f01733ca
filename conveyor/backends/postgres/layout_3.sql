-- Layout version 3: the listing indexes by task and by queue leave out running jobs.
--
-- A claim and a finish change the state, which partial indexes name, so neither is a HOT
-- update: each row version they write gets an entry in every index whose predicate it
-- meets. A full index gets one per claim and one per finish; left out of these two, a claim
-- writes none in them (a busy worker's end-to-end path: about a fifth of the server's CPU
-- per job, docs/postgres.md "Where a job's time goes"). Running jobs are few (at most the
-- workers' slots), and a listing finds them in {ns}_jobs_running (queries.sql, list_by_task).
-- Rebuilt under the same names, in the step's transaction: a listing waits for the build.

DROP INDEX IF EXISTS {ns}_jobs_by_task;
CREATE INDEX {ns}_jobs_by_task ON {ns}_jobs (task, id) WHERE state <> 'running';

DROP INDEX IF EXISTS {ns}_jobs_by_queue;
CREATE INDEX {ns}_jobs_by_queue ON {ns}_jobs (queue, id) WHERE state <> 'running';
