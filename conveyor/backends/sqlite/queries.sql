-- The statements of the SQLite backend, one per "-- name:" section. {ns} is the namespace;
-- {columns} and {values} are the JobRecord columns and their "?" placeholders, in field
-- order. Writes run inside BEGIN IMMEDIATE transactions opened by the backend.

-- name: insert
INSERT INTO {ns}_jobs ({columns}) VALUES ({values});

-- name: insert_or_skip
INSERT INTO {ns}_jobs ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING;

-- name: by_id
SELECT {columns} FROM {ns}_jobs WHERE id = ?;

-- name: by_key
SELECT {columns} FROM {ns}_jobs WHERE "key" = ?;

-- name: by_unique_key
SELECT {columns} FROM {ns}_jobs
WHERE unique_key = ? AND state IN ('scheduled', 'queued', 'running');

-- name: state_of
SELECT state FROM {ns}_jobs WHERE id = ?;

-- name: claim
-- The jobs that a claim just read (limits.sql ready_*), in the same write transaction, by
-- their keys: {ids} becomes a placeholder per job (?4, ?5, ...), so the statement updates
-- them in one pass, with one temporary table for the list (none for a list of one), and no
-- RETURNING: the backend makes the records from what it read (rows.from_ready). A statement
-- per job costs some 17k instructions more per job than a place in the list.
UPDATE {ns}_jobs
SET state = 'running', attempts = attempts + 1, token = token + 1, worker = ?1,
    started_at = ?2, lease_expires_at = ?3
WHERE id IN ({ids}) AND (state = 'queued' OR state = 'scheduled');

-- name: extend_lease
UPDATE {ns}_jobs SET lease_expires_at = :lease_expires_at
WHERE id = :id AND token = :token AND state = 'running'
RETURNING cancel_requested;

-- name: set_progress
UPDATE {ns}_jobs SET progress = :progress
WHERE id = :id AND token = :token AND state = 'running';

-- name: finish_final
-- worker stays: which worker ran a finished job is still shown. Parameters by position
-- (id, token, state, result, error, now): binding by name costs a dictionary look-up per
-- parameter, and this statement runs once per job. A result or error of 0 stands for NULL
-- (a blob or JSON text never equals the integer 0): Python's sqlite3 binds None, and bytes,
-- only after a failed search for an adapter, which costs more than the rest of the binding
-- (finishing.py passes small results as a bytearray, which it binds at once).
UPDATE {ns}_jobs
SET state = ?3, result = nullif(?4, 0), error = nullif(?5, 0), finished_at = ?6,
    purge_at = ?6 + result_ttl, lease_expires_at = NULL, cancel_requested = 0
WHERE id = ?1 AND token = ?2 AND state = 'running';

-- name: finish_finals
-- finish_final for a batch of FINALS_AT_ONCE jobs or more (finishing.py), one statement:
-- {rows} becomes a row of placeholders per job, (id, token, state, result, error), from ?2
-- on, and ?1 is now. Its temporary tables (v, and the rows to update) cost some 75k
-- instructions; a job costs some 13k less as a row of v than as a statement of its own.
UPDATE {ns}_jobs
SET state = v.column3, result = nullif(v.column4, 0), error = nullif(v.column5, 0),
    finished_at = ?1, purge_at = ?1 + result_ttl, lease_expires_at = NULL, cancel_requested = 0
FROM (VALUES {rows}) AS v
WHERE {ns}_jobs.id = v.column1 AND {ns}_jobs.token = v.column2 AND {ns}_jobs.state = 'running';

-- name: finish_retry
UPDATE {ns}_jobs
SET state = :state, ready_at = :ready_at, error = :error, failures = failures + :failure,
    worker = NULL, lease_expires_at = NULL
WHERE id = :id AND token = :token AND state = 'running';

-- name: release
-- SQLite evaluates every SET expression against the row as it was, so the CASEs see the
-- cancel_requested that the last line clears.
UPDATE {ns}_jobs
SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
    attempts = attempts - :take_back, token = token + 1,
    worker = NULL, lease_expires_at = NULL,
    result = CASE WHEN cancel_requested THEN NULL ELSE result END,
    error = CASE WHEN cancel_requested THEN NULL ELSE error END,
    finished_at = CASE WHEN cancel_requested THEN :now ELSE finished_at END,
    purge_at = CASE WHEN cancel_requested THEN :now + result_ttl ELSE purge_at END,
    cancel_requested = 0
WHERE id = :id AND token = :token AND state = 'running';

-- name: lapsed
-- :cutoff is the store's time; served by the jobs_running index.
SELECT id, crashes, cancel_requested FROM {ns}_jobs
WHERE state = 'running' AND lease_expires_at < :cutoff;

-- name: recover_requeue
UPDATE {ns}_jobs
SET state = 'queued', ready_at = :now, crashes = crashes + :crash, token = token + 1,
    worker = NULL, lease_expires_at = NULL
WHERE id = :id;

-- name: recover_final
UPDATE {ns}_jobs
SET state = :state, crashes = crashes + :crash, token = token + 1, worker = NULL,
    lease_expires_at = NULL, result = NULL, error = :error, finished_at = :now,
    purge_at = :now + result_ttl, cancel_requested = 0
WHERE id = :id;

-- name: cancel_running
UPDATE {ns}_jobs SET cancel_requested = 1 WHERE id = :id AND state = 'running';

-- name: cancel_waiting
-- held: only a queued job is parked (limits.sql {ns}_jobs_parked)
UPDATE {ns}_jobs
SET state = 'cancelled', result = NULL, error = NULL, finished_at = :now,
    purge_at = :now + result_ttl, worker = NULL, lease_expires_at = NULL, cancel_requested = 0,
    held = NULL
WHERE id = :id AND state IN ('scheduled', 'queued');

-- name: retry
-- OR IGNORE: when another job of the same unique key is active, the unique index refuses
-- the update and retry reports False rather than making a twin. A ready_at of canvas.HOLD
-- is a workflow step stopped before its inputs came: it has nothing to run with.
UPDATE OR IGNORE {ns}_jobs
SET state = 'queued', ready_at = :now, expires_at = NULL, failures = 0, crashes = 0,
    result = NULL, error = NULL, finished_at = NULL, purge_at = NULL, cancel_requested = 0,
    held = NULL
WHERE id = :id AND state IN ('failed', 'cancelled', 'expired')
  AND ready_at < 253402300799.0;

-- name: sweep_purge
DELETE FROM {ns}_jobs WHERE purge_at <= :now AND purge_at IS NOT NULL;

-- name: sweep_expire
-- held: as cancel_waiting
UPDATE {ns}_jobs
SET state = 'expired', result = NULL, error = NULL, finished_at = :now,
    purge_at = :now + result_ttl, worker = NULL, lease_expires_at = NULL, cancel_requested = 0,
    held = NULL
WHERE expires_at <= :now AND expires_at IS NOT NULL AND state IN ('scheduled', 'queued')
RETURNING id;

-- name: sweep_promote
-- INDEXED BY: the listing index by state would otherwise tempt the planner
UPDATE {ns}_jobs INDEXED BY {ns}_jobs_scheduled SET state = 'queued' WHERE ready_at <= :now AND state = 'scheduled'
RETURNING id;

-- name: sweep_workers
DELETE FROM {ns}_workers WHERE last_seen < :before;

-- name: list_jobs
-- The listing queries (app.jobs), one per index that serves a page, chosen by
-- inspection.py; each is a range scan down from the cursor that stops after LIMIT rows.
-- An absent cursor is passed as U+10FFFF, above every id. This one walks the table itself
-- (its primary key): no filter, or a filter that most jobs match.
SELECT {columns} FROM {ns}_jobs
WHERE id < :cursor
  AND (:state IS NULL OR state = :state)
  AND (:task IS NULL OR task = :task)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id DESC
LIMIT :limit;

-- name: list_by_state
-- index: {ns}_jobs_in_state (a state no successful job passes through; its WHERE repeated)
SELECT {columns} FROM {ns}_jobs INDEXED BY {ns}_jobs_in_state
WHERE state = :state AND (state < 'queued' OR state = 'scheduled') AND id < :cursor
  AND (:task IS NULL OR task = :task)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id DESC
LIMIT :limit;

-- name: list_by_task
-- index: {ns}_jobs_by_task
SELECT {columns} FROM {ns}_jobs INDEXED BY {ns}_jobs_by_task
WHERE task = :task AND id < :cursor
  AND (:state IS NULL OR state = :state)
  AND (:task IS NULL OR task = :task)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id DESC
LIMIT :limit;

-- name: list_by_queue
-- index: {ns}_jobs_by_queue
SELECT {columns} FROM {ns}_jobs INDEXED BY {ns}_jobs_by_queue
WHERE queue = :queue AND id < :cursor
  AND (:state IS NULL OR state = :state)
  AND (:task IS NULL OR task = :task)
ORDER BY id DESC
LIMIT :limit;

-- name: list_running
-- index: {ns}_jobs_running; running jobs are few (one per busy worker slot): sorted here
SELECT {columns} FROM {ns}_jobs INDEXED BY {ns}_jobs_running
WHERE state = 'running' AND id < :cursor
  AND (:state IS NULL OR state = :state)
  AND (:task IS NULL OR task = :task)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id DESC
LIMIT :limit;

-- name: list_queued
-- indexes: {ns}_jobs_to_claim and {ns}_jobs_parked (queued jobs a limit holds back), their ids
-- sorted here: used while few jobs are queued (count_queued)
SELECT {columns} FROM {ns}_jobs
WHERE id IN (
    SELECT id FROM {ns}_jobs INDEXED BY {ns}_jobs_to_claim
    WHERE state = 'queued' AND held IS NULL AND id < :cursor
    UNION ALL
    SELECT id FROM {ns}_jobs INDEXED BY {ns}_jobs_parked
    WHERE state = 'queued' AND held IS NOT NULL AND id < :cursor
)
  AND (:task IS NULL OR task = :task)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id DESC
LIMIT :limit;

-- name: count_queued
-- indexes: {ns}_jobs_to_claim, {ns}_jobs_parked; counts no further than :upto in each
SELECT (SELECT count(*) FROM (
            SELECT 1 FROM {ns}_jobs INDEXED BY {ns}_jobs_to_claim
            WHERE state = 'queued' AND held IS NULL LIMIT :upto))
     + (SELECT count(*) FROM (
            SELECT 1 FROM {ns}_jobs INDEXED BY {ns}_jobs_parked
            WHERE state = 'queued' AND held IS NOT NULL LIMIT :upto));

-- name: queue_counts
-- queue_counts reads no succeeded job: all jobs per queue from {ns}_queue_sizes (sizes.sql,
-- one row per queue); queued ones from {ns}_jobs_to_claim and {ns}_jobs_parked; running ones
-- (few) through their index; each rare state of each queue by a range of
-- {ns}_jobs_in_state read alone (no GROUP BY: it would sort every entry); succeeded is the
-- rest (inspection.py adds up, leaving out the states counted 0). One statement: one snapshot, so the parts agree.
SELECT queue, 'all', n FROM {ns}_queue_sizes WHERE n > 0
UNION ALL
SELECT queue, 'queued', count(*) FROM {ns}_jobs INDEXED BY {ns}_jobs_to_claim
WHERE state = 'queued' AND held IS NULL GROUP BY queue
UNION ALL
SELECT queue, 'queued', count(*) FROM {ns}_jobs INDEXED BY {ns}_jobs_parked
WHERE state = 'queued' AND held IS NOT NULL GROUP BY queue
UNION ALL
SELECT queue, state, count(*) FROM {ns}_jobs INDEXED BY {ns}_jobs_running
WHERE state = 'running' GROUP BY queue
UNION ALL
SELECT q.queue, r.column1, (
    SELECT count(*) FROM {ns}_jobs INDEXED BY {ns}_jobs_in_state
    WHERE state = r.column1 AND (state < 'queued' OR state = 'scheduled') AND queue = q.queue)
FROM {ns}_queue_sizes AS q, (VALUES ('cancelled'), ('expired'), ('failed'), ('scheduled')) AS r
WHERE q.n > 0;

-- name: purge_queue
DELETE FROM {ns}_jobs WHERE queue = :queue AND state IN ('scheduled', 'queued');

-- name: beats
SELECT (SELECT at FROM {ns}_beats WHERE name = 'quiet_after'),
       (SELECT at FROM {ns}_beats WHERE name = 'stall_until');

-- name: put_beat
INSERT INTO {ns}_beats (name, at) VALUES (:name, :at)
ON CONFLICT (name) DO UPDATE SET at = excluded.at;

-- name: put_worker
INSERT OR REPLACE INTO {ns}_workers
    (id, host, pid, queues, concurrency, pool, started_at, last_seen, running, processed, failed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: delete_worker
DELETE FROM {ns}_workers WHERE id = ?;

-- name: workers
SELECT id, host, pid, queues, concurrency, pool, started_at, last_seen, running, processed,
       failed
FROM {ns}_workers ORDER BY started_at, id;

-- name: schedule
SELECT last_due, last_job_id FROM {ns}_schedules WHERE name = ?;

-- name: record_skipped
INSERT INTO {ns}_schedules (name, last_due) VALUES (:name, :due)
ON CONFLICT (name) DO UPDATE SET last_due = excluded.last_due;

-- name: record_enqueued
INSERT INTO {ns}_schedules (name, last_due, last_job_id, last_enqueued_at)
VALUES (:name, :due, :job_id, :now)
ON CONFLICT (name) DO UPDATE SET last_due = excluded.last_due,
    last_job_id = excluded.last_job_id, last_enqueued_at = excluded.last_enqueued_at;

-- name: schedules
SELECT name, last_due, last_job_id, last_enqueued_at FROM {ns}_schedules ORDER BY name;

-- name: events_after
-- :row is the row of the last event seen (feed.py: an event id is row id * 1024 + index)
SELECT id, job_id, task, state, progress, at, batch FROM {ns}_events
WHERE id >= :row ORDER BY id LIMIT :limit;

-- name: last_event_id
SELECT id * 1024 + coalesce(json_array_length(batch) - 1, 0) FROM {ns}_events
ORDER BY id DESC LIMIT 1;

-- name: feed_put
-- A feed row of changes known to the backend: :batch is [[job_id, task, state], ...].
INSERT INTO {ns}_events (job_id, task, state, progress, at, batch)
VALUES ('', '', '', NULL, {clock}, :batch);

-- name: feed_write
-- One feed row for what a statement just did to the jobs :ids (a JSON list, at most 1024):
-- their state now, in this transaction.
INSERT INTO {ns}_events (job_id, task, state, progress, at, batch)
SELECT '', '', '', NULL, {clock}, json_group_array(json_array(id, task, state))
FROM {ns}_jobs WHERE id IN (SELECT value FROM json_each(:ids))
HAVING count(*) > 0;

-- name: sweep_events
DELETE FROM {ns}_events WHERE id <= (SELECT max(id) FROM {ns}_events) - :keep;

-- name: count_ended
-- The counters (schema.sql {ns}_counters) of attempts that just ended, :ids a JSON list:
-- one upsert per distinct task, outcome and run-time bucket of the batch.
INSERT INTO {ns}_counters (task, kind, label, n, total)
SELECT task, state, {row_runtime_bucket}, count(*), sum({row_runtime})
FROM {ns}_jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND (state = 'succeeded' OR state = 'failed')
GROUP BY 1, 2, 3
ON CONFLICT DO UPDATE SET n = n + excluded.n, total = total + excluded.total;

-- name: count_errors
INSERT INTO {ns}_counters (task, kind, label, n, total)
SELECT task, 'error', coalesce(json_extract(error, '$.type'), 'Error'), count(*), 0
FROM {ns}_jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'failed'
GROUP BY 1, 3
ON CONFLICT DO UPDATE SET n = n + excluded.n;

-- name: count_add
-- Counters added up by the backend (ledger.py).
INSERT INTO {ns}_counters (task, kind, label, n, total) VALUES (?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET n = n + excluded.n, total = total + excluded.total;

-- name: count_retries
-- Attempts that finished with a retry (:ids), per task.
INSERT INTO {ns}_counters (task, kind, label, n, total)
SELECT task, 'retries', '', count(*), 0
FROM {ns}_jobs WHERE id IN (SELECT value FROM json_each(:ids))
GROUP BY 1
ON CONFLICT DO UPDATE SET n = n + excluded.n;

-- name: counters
SELECT task, kind, label, n, total FROM {ns}_counters;

-- name: next_queued_queue
-- index: {ns}_jobs_to_claim (a skip scan: one search per queue)
SELECT min(queue) FROM {ns}_jobs
WHERE state = 'queued' AND held IS NULL AND queue > :after;

-- name: next_priority
-- index: {ns}_jobs_to_claim (one search per priority present in the queue)
SELECT max(priority) FROM {ns}_jobs
WHERE state = 'queued' AND held IS NULL AND queue = :queue AND priority < :below;

-- name: oldest_ready
-- index: {ns}_jobs_to_claim (the first entry of one priority)
SELECT min(ready_at) FROM {ns}_jobs
WHERE state = 'queued' AND held IS NULL AND queue = :queue AND priority = :priority;

-- name: oldest_held
-- index: {ns}_jobs_parked: queued jobs a limit holds back (few), by queue
SELECT queue, min(ready_at) FROM {ns}_jobs INDEXED BY {ns}_jobs_parked
WHERE state = 'queued' AND held IS NOT NULL GROUP BY queue;

-- name: ping
SELECT count(*) FROM {ns}_schedules;

-- Workflows (sqlite/flows.py). instr(meta, '"flow"') picks workflow jobs without parsing
-- every meta; json_extract then reads the graph.

-- name: flow_insert_workflow
INSERT INTO {ns}_workflows (id, jobs, live) VALUES (?, ?, ?);

-- name: flow_workflow
SELECT w.value ->> 0, w.value ->> 1, w.value ->> 2, j.state
FROM {ns}_workflows AS f, json_each(f.jobs) AS w
LEFT JOIN {ns}_jobs AS j ON j.id = w.value ->> 0
WHERE f.id = :id
ORDER BY w.key;

-- name: flow_exists
SELECT 1 FROM {ns}_workflows WHERE id = :id;

-- name: flow_finished
SELECT id, state, result, error, meta ->> '$.flow' FROM {ns}_jobs
WHERE id IN (SELECT value FROM json_each(:ids))
  AND instr(meta, '"flow"') > 0 AND state IN ('succeeded', 'failed', 'cancelled', 'expired');

-- name: flow_step
SELECT state, ready_at, meta ->> '$.flow' FROM {ns}_jobs WHERE id = :id;

-- name: flow_payload
SELECT payload FROM {ns}_jobs WHERE id = :id;

-- name: flow_expect
INSERT INTO {ns}_flow_filled (job_id, filled, need) VALUES (?, 0, ?);

-- name: flow_put_input
-- Only while the step is held (scheduled at canvas.HOLD), and once per slot.
INSERT INTO {ns}_flow_inputs (job_id, slot, value)
SELECT :id, :slot, :value
WHERE EXISTS (SELECT 1 FROM {ns}_jobs WHERE id = :id AND state = 'scheduled' AND ready_at >= :hold)
ON CONFLICT DO NOTHING;

-- name: flow_count_input
UPDATE {ns}_flow_filled SET filled = filled + 1 WHERE job_id = :id RETURNING filled >= need;

-- name: flow_inputs
SELECT value FROM {ns}_flow_inputs WHERE job_id = :id ORDER BY slot;

-- name: flow_drop_inputs
DELETE FROM {ns}_flow_inputs WHERE job_id = :id;

-- name: flow_drop_filled
DELETE FROM {ns}_flow_filled WHERE job_id = :id;

-- name: flow_promote
UPDATE {ns}_jobs SET state = 'queued', ready_at = :now, payload = :payload
WHERE id = :id AND state = 'scheduled';

-- name: flow_end
UPDATE {ns}_jobs
SET state = :state, error = :error, finished_at = :now, purge_at = :now + result_ttl
WHERE id = :id AND state = 'scheduled';

-- name: flow_expiring
SELECT id FROM {ns}_jobs
WHERE expires_at <= :now AND expires_at IS NOT NULL AND state IN ('scheduled', 'queued')
  AND instr(meta, '"flow"') > 0;

-- name: flow_purging
SELECT meta ->> '$.workflow', count(*) FROM {ns}_jobs
WHERE purge_at <= :now AND purge_at IS NOT NULL AND instr(meta, '"workflow"') > 0
GROUP BY 1;

-- name: flow_purged
UPDATE {ns}_workflows SET live = live - :n WHERE id = :id;

-- name: flow_forget
DELETE FROM {ns}_workflows WHERE live <= 0;
