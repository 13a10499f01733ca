-- How many jobs each queue holds, whatever their state (app.queues: queue_counts). Kept by
-- the triggers below, in the transaction of every insert and delete of a job, through the
-- user's own connection too (enqueue_with). Claims and finishes change no job's queue, so
-- they do not touch it: the counts by state come from the small states' indexes, and
-- succeeded is the rest (inspection.py). A row is never deleted (n may fall to 0).
--
-- Made by upgrade.py, not schema.sql: the table, its first counts and the triggers come in
-- one write transaction, so no job is counted twice or missed, whichever process opens a
-- file made before it first.

CREATE TABLE {ns}_queue_sizes (
    queue TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO {ns}_queue_sizes (queue, n)
SELECT queue, count(*) FROM {ns}_jobs INDEXED BY {ns}_jobs_by_queue GROUP BY queue;

CREATE TRIGGER {ns}_jobs_size_insert AFTER INSERT ON {ns}_jobs
BEGIN
    INSERT INTO {ns}_queue_sizes (queue, n) VALUES (new.queue, 1)
    ON CONFLICT (queue) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER {ns}_jobs_size_delete AFTER DELETE ON {ns}_jobs
BEGIN
    UPDATE {ns}_queue_sizes SET n = n - 1 WHERE queue = old.queue;
END;
