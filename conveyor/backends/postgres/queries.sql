-- The statements of the PostgreSQL backend, one per "-- name:" section; a "-- part:" section
-- is a list of CTEs that statements include as {part:NAME}. {ns} is the namespace,
-- {columns} and {values} the JobRecord columns and their %(field)s placeholders, in field
-- order. {channel} is the namespace's LISTEN/NOTIFY channel. Notifications sent inside a
-- transaction are delivered when it commits, and not at all when it rolls back.
--
-- A CTE that sends notifications runs only if the statement reads it, so each ends with
-- "WHERE (SELECT count(*) FROM told) >= 0": a filter the planner cannot drop (a LEFT JOIN to
-- it could be removed as unused, and the notifications with it).
--
-- Notification payloads: "r <queue>" (jobs may be ready in that queue) and "c <id> <id> ..."
-- (those jobs changed), 250 ids at most per notification, so that a payload stays below
-- PostgreSQL's limit of 8000 bytes.

-- name: insert
-- ON CONFLICT (id): a retry after a lost reply to a commit that did happen stores nothing twice.
INSERT INTO {ns}_jobs ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING;

-- name: insert_many
-- A batch of jobs without keys in one statement: one array per column, one row per index.
INSERT INTO {ns}_jobs ({columns})
SELECT * FROM unnest(
    %(id)b::text[], %(task)b::text[], %(payload)b::bytea[], %(queue)b::text[],
    %(priority)b::integer[], %(state)b::text[], %(key)b::text[], %(unique_key)b::text[],
    %(attempts)b::integer[], %(failures)b::integer[], %(crashes)b::integer[],
    %(created_at)b::double precision[], %(ready_at)b::double precision[],
    %(expires_at)b::double precision[], %(started_at)b::double precision[],
    %(finished_at)b::double precision[], %(purge_at)b::double precision[],
    %(result_ttl)b::double precision[], %(result)b::bytea[], %(error)b::jsonb[],
    %(progress)b::jsonb[], %(worker)b::text[], %(token)b::bigint[],
    %(lease_expires_at)b::double precision[], %(cancel_requested)b::boolean[],
    %(meta)b::jsonb[]
)
ON CONFLICT (id) DO NOTHING;

-- name: insert_and_notify
-- delay(): one round trip, its own transaction; the notification goes out on commit.
WITH stored AS (
    INSERT INTO {ns}_jobs ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING
    RETURNING queue
)
SELECT pg_notify('{channel}', 'r ' || queue) FROM stored;

-- name: insert_or_skip
-- Any unique index refuses it (id, key, unique key); the caller then looks up the holder.
INSERT INTO {ns}_jobs ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING id;

-- name: notify_ready
SELECT pg_notify('{channel}', 'r ' || q) FROM unnest(%(queues)s::text[]) AS q;

-- name: by_id
SELECT {columns} FROM {ns}_jobs WHERE id = %(id)s;

-- name: by_key
SELECT {columns} FROM {ns}_jobs WHERE "key" = %(value)s;

-- name: by_unique_key
SELECT {columns} FROM {ns}_jobs
WHERE unique_key = %(value)s AND state IN ('scheduled', 'queued', 'running');

-- name: state_of
SELECT state FROM {ns}_jobs WHERE id = %(id)s;

-- name: store_time
-- The store's clock (see base.py): the server's, unless the backend was given a test clock.
SELECT coalesce(%(store_time)s::double precision,
                extract(epoch FROM clock_timestamp())::double precision);

-- name: beat
-- A heartbeat's mark on the store-wide record (bookkeeping.note_heartbeat, the rule written
-- in SQL), read and written by this one statement, its own transaction: the row's lock is
-- held across no round trip, so a worker frozen or cut off in the middle of its heartbeat
-- holds up no other worker's (a lock held between two statements would stay until the
-- server heard of the client: hours behind a black hole). Returns the store's time.
UPDATE {ns}_beats SET
    stall_until = CASE WHEN quiet_after IS NOT NULL AND c.t > quiet_after
                       THEN greatest(coalesce(stall_until, c.t), c.t + %(grace_seconds)s)
                       ELSE stall_until END,
    quiet_after = c.t + %(quiet_seconds)s
FROM (SELECT coalesce(%(store_time)s::double precision,
                      extract(epoch FROM clock_timestamp())::double precision) AS t) AS c
RETURNING c.t;

-- name: beats
SELECT quiet_after, stall_until FROM {ns}_beats;

-- part: claim
-- The lease starts at the store's time (clock), read by the statement itself. A claim sends
-- no notification: nobody waits for a job to start, and every NOTIFY takes a lock that
-- orders the commits of all notifying transactions (measured: about 1 ms of a pickup).
-- Index: {ns}_jobs_queued serves the queued part, one ordered range scan per queue (the
-- LATERAL join runs it once per queue name) that stops after LIMIT rows; {ns}_jobs_scheduled
-- serves the due scheduled part from its head. A queued job is ready whatever its ready_at
-- (the contract allows it: the hosts' clocks may differ).
--
-- Why a MATERIALIZED CTE: with the LIMIT and FOR UPDATE SKIP LOCKED inside it, the planner
-- must run the pick exactly once. Written as "UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR
-- UPDATE SKIP LOCKED)" it may turn the subquery into a join and run it again per row, and
-- claim more than LIMIT jobs (as Oban learned). SKIP LOCKED lets concurrent claims pass by
-- each other's rows instead of waiting; the outer LIMIT keeps the best of the candidates.
--
-- The picked ids reach the UPDATE as an array, "id = ANY(ARRAY(...))": one primary-key probe
-- each, whatever the planner guesses of their number. Joined to the CTE instead, the generic
-- plan that PostgreSQL may keep for a prepared finish_and_claim (it guesses a tenth of the
-- queued jobs for LIMIT n) hashed a scan of the whole table.
--
-- Once any limit is stored, this claims nothing and says so ("limited"): the claim then goes
-- through limits.py, which checks every job's limits under their locks.
clock AS MATERIALIZED (
    SELECT coalesce(%(store_time)s::double precision,
                    extract(epoch FROM clock_timestamp())::double precision) AS t
), picked AS MATERIALIZED (
    SELECT c.id FROM (
        SELECT ready.id, ready.priority, ready.ready_at
        FROM unnest(%(queues)s::text[]) AS q(name)
        CROSS JOIN LATERAL (
            SELECT id, priority, ready_at FROM {ns}_jobs
            WHERE state = 'queued' AND parked IS NULL AND queue = q.name
              AND (expires_at IS NULL OR expires_at > %(now)s)
              AND NOT EXISTS (SELECT 1 FROM {ns}_limits)
            ORDER BY priority DESC, ready_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS ready
        UNION ALL
        SELECT due.id, due.priority, due.ready_at FROM (
            SELECT id, priority, ready_at FROM {ns}_jobs
            WHERE state = 'scheduled' AND ready_at <= %(now)s
              AND queue = ANY(%(queues)s::text[])
              AND (expires_at IS NULL OR expires_at > %(now)s)
              AND NOT EXISTS (SELECT 1 FROM {ns}_limits)
            ORDER BY ready_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS due
    ) AS c
    ORDER BY c.priority DESC, c.ready_at, c.id
    LIMIT %(limit)s
), claimed AS (
    UPDATE {ns}_jobs AS j
    SET state = 'running', attempts = j.attempts + 1, token = j.token + 1,
        worker = %(worker)s, started_at = clock.t,
        lease_expires_at = clock.t + %(lease_seconds)s
    FROM clock WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING {j_columns}
), claim_events AS (
    -- The change feed's rows (layout_2.sql: its trigger leaves claims to this).
    INSERT INTO {ns}_events (job_id, task, state, at)
    SELECT id, task, 'running', extract(epoch FROM clock_timestamp()) FROM claimed
)


-- name: claim
WITH {part:claim}
SELECT flag.limited, claimed.*
FROM (SELECT EXISTS (SELECT 1 FROM {ns}_limits) AS limited) AS flag
LEFT JOIN claimed ON true;

-- name: extend_leases
-- Index: the primary key, one lookup per lease.
UPDATE {ns}_jobs AS j SET lease_expires_at = %(lease_expires_at)s
FROM unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS v(id, token)
WHERE j.id = v.id AND j.token = v.token AND j.state = 'running'
RETURNING j.id, v.token, j.cancel_requested;

-- name: set_progress
WITH done AS (
    UPDATE {ns}_jobs SET progress = %(progress)s
    WHERE id = %(id)s AND token = %(token)s AND state = 'running'
    RETURNING id
)
SELECT pg_notify('{channel}', 'c ' || id) FROM done;

-- part: finish
-- A batch of outcomes, each fenced by its token; returns the ids whose outcome was written.
-- Final outcomes set the result and the purge time; retries (scheduled or queued) set
-- ready_at and may count a failure. Index: the primary key, one lookup per job.
done AS (
    UPDATE {ns}_jobs AS j SET
        state = v.state,
        result = CASE WHEN v.final THEN v.result ELSE j.result END,
        error = v.error,
        finished_at = CASE WHEN v.final THEN %(now)s ELSE j.finished_at END,
        purge_at = CASE WHEN v.final THEN %(now)s + j.result_ttl ELSE j.purge_at END,
        ready_at = CASE WHEN v.final THEN j.ready_at ELSE v.ready_at END,
        failures = j.failures + v.failure,
        cancel_requested = CASE WHEN v.final THEN false ELSE j.cancel_requested END,
        worker = CASE WHEN v.final THEN j.worker END,  -- who ran a finished job stays shown
        lease_expires_at = NULL
    FROM unnest(
        %(ids)b::text[], %(tokens)b::bigint[], %(states)b::text[], %(finals)b::boolean[],
        %(results)b::bytea[], %(errors)b::jsonb[], %(ready_ats)b::double precision[],
        %(failures)b::integer[]
    ) AS v(id, token, state, final, result, error, ready_at, failure)
    WHERE j.id = v.id AND j.token = v.token AND j.state = 'running'
      AND (%(flows)s OR NOT (v.final AND j.meta ? 'flow'))
    RETURNING j.id, j.queue, j.state, j.task, j.started_at, j.error
), finish_events AS (
    -- The change feed's rows (layout_2.sql: its trigger leaves finishes to this).
    INSERT INTO {ns}_events (job_id, task, state, at)
    SELECT id, task, state, extract(epoch FROM clock_timestamp()) FROM done
), counted AS (
    -- The counters (layout_2.sql): one row per distinct task, outcome and run-time bucket of
    -- the batch. A data-modifying CTE runs whether or not the statement reads it.
    INSERT INTO {ns}_counters (task, kind, label, n, total)
    SELECT task, state, {runtime_bucket}, count(*), sum(runtime) FROM (
        SELECT task, state, %(now)s - started_at AS runtime FROM done
        WHERE state IN ('succeeded', 'failed')
    ) AS ended GROUP BY 1, 2, 3
    UNION ALL
    SELECT task, 'error', coalesce(error ->> 'type', 'Error'), count(*), 0 FROM done
    WHERE state = 'failed' GROUP BY 1, 3
    UNION ALL
    SELECT task, 'retries', '', count(*), 0 FROM done
    WHERE state IN ('scheduled', 'queued') GROUP BY 1
), deferred AS (
    -- Workflow jobs made final are left to a transaction that decides their successors too.
    -- done skipped them, so only the ids it did not write are looked up (with no workflow
    -- job in the batch, none: no second probe of the primary key per job).
    SELECT j.id FROM (
        SELECT v.id, v.token FROM unnest(%(ids)b::text[], %(tokens)b::bigint[],
                                         %(finals)b::boolean[]) AS v(id, token, final)
        WHERE NOT %(flows)s AND v.final AND NOT EXISTS (SELECT FROM done WHERE done.id = v.id)
    ) AS v
    JOIN {ns}_jobs AS j ON j.id = v.id
    WHERE j.token = v.token AND j.state = 'running' AND j.meta ? 'flow'
), finish_told AS (
    SELECT pg_notify('{channel}', 'c ' || string_agg(id, ' ')) FROM (
        SELECT id, (row_number() OVER ()) / 250 AS part FROM done
    ) AS parts GROUP BY part
    UNION ALL
    SELECT pg_notify('{channel}', 'r ' || queue) FROM done WHERE state = 'queued' GROUP BY queue
)

-- name: finish
-- The ids written, and those deferred (workflow jobs, when flows is false).
WITH {part:finish}
SELECT done.id, false FROM done WHERE (SELECT count(*) FROM finish_told) >= 0
UNION ALL
SELECT id, true FROM deferred;

-- name: finish_and_claim
-- A busy worker's batch: its outcomes written and its next jobs claimed in one statement, so
-- one round trip and one commit. The two parts touch different rows (running ones, ready
-- ones). One row with the ids of the outcomes written and deferred and whether limits are
-- stored, its job columns null; then one row per claimed job, its first three columns null
-- (the ids once, not beside every claimed job: each copy is an array to print and parse).
WITH {part:finish}, {part:claim}
SELECT (SELECT array_agg(id) FROM done WHERE (SELECT count(*) FROM finish_told) >= 0),
       (SELECT array_agg(id) FROM deferred),
       EXISTS (SELECT 1 FROM {ns}_limits),
       {null_columns}
UNION ALL
SELECT NULL, NULL, NULL, claimed.* FROM claimed;

-- name: release
-- The CASEs see the row as it was, with the cancel_requested that the last line clears.
WITH done AS (
    UPDATE {ns}_jobs
    SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempts = attempts - %(take_back)s, token = token + 1,
        worker = NULL, lease_expires_at = NULL,
        result = CASE WHEN cancel_requested THEN NULL ELSE result END,
        error = CASE WHEN cancel_requested THEN NULL ELSE error END,
        finished_at = CASE WHEN cancel_requested THEN %(now)s ELSE finished_at END,
        purge_at = CASE WHEN cancel_requested THEN %(now)s + result_ttl ELSE purge_at END,
        cancel_requested = false
    WHERE id = %(id)s AND token = %(token)s AND state = 'running'
    RETURNING id, queue
)
SELECT pg_notify('{channel}', m) FROM done, LATERAL (VALUES ('c ' || id), ('r ' || queue)) AS n(m);

-- name: recover
-- Index: {ns}_jobs_running. One statement: every lease that ran out by the store's time
-- (cutoff) is decided at once, and a concurrent recover skips the rows this one holds. In a
-- stall the caller passes crash = 0 and a max_crashes no job reaches.
WITH lapsed AS MATERIALIZED (
    SELECT id FROM {ns}_jobs
    WHERE state = 'running' AND lease_expires_at < %(cutoff)s
    FOR UPDATE SKIP LOCKED
), done AS (
    UPDATE {ns}_jobs AS j SET
        state = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.crashes + %(crash)s >= %(max_crashes)s THEN 'failed'
            ELSE 'queued' END,
        crashes = j.crashes + %(crash)s, token = j.token + 1, worker = NULL,
        lease_expires_at = NULL,
        ready_at = CASE WHEN j.cancel_requested OR j.crashes + %(crash)s >= %(max_crashes)s
            THEN j.ready_at ELSE %(now)s END,
        result = CASE WHEN j.cancel_requested OR j.crashes + %(crash)s >= %(max_crashes)s
            THEN NULL ELSE j.result END,
        error = CASE
            WHEN j.cancel_requested THEN NULL
            WHEN j.crashes + %(crash)s >= %(max_crashes)s THEN jsonb_build_object(
                'type', 'WorkerLost',
                'message', replace(%(lost_message)s, '{crashes}', (j.crashes + 1)::text),
                'traceback', NULL)
            ELSE j.error END,
        finished_at = CASE WHEN j.cancel_requested OR j.crashes + %(crash)s >= %(max_crashes)s
            THEN %(now)s ELSE j.finished_at END,
        purge_at = CASE WHEN j.cancel_requested OR j.crashes + %(crash)s >= %(max_crashes)s
            THEN %(now)s + j.result_ttl ELSE j.purge_at END,
        cancel_requested = false
    FROM lapsed WHERE j.id = lapsed.id
    RETURNING j.id, j.queue, j.state, j.task, j.started_at
), counted AS (
    -- A job failed for losing its worker counts as a failed attempt (layout_2.sql).
    INSERT INTO {ns}_counters (task, kind, label, n, total)
    SELECT task, 'failed', {runtime_bucket}, count(*), sum(runtime) FROM (
        SELECT task, %(now)s - started_at AS runtime FROM done WHERE state = 'failed'
    ) AS ended GROUP BY 1, 3
    UNION ALL
    SELECT task, 'error', 'WorkerLost', count(*), 0 FROM done WHERE state = 'failed' GROUP BY 1
), told AS (
    SELECT pg_notify('{channel}', 'c ' || string_agg(id, ' ')) FROM (
        SELECT id, (row_number() OVER ()) / 250 AS part FROM done
    ) AS parts GROUP BY part
    UNION ALL
    SELECT pg_notify('{channel}', 'r ' || queue) FROM done WHERE state = 'queued' GROUP BY queue
)
SELECT done.id, done.state FROM done WHERE (SELECT count(*) FROM told) >= 0 ORDER BY done.id;

-- name: cancel
-- A running job gets cancel_requested (its worker stops it); a waiting one is final at once.
WITH done AS (
    UPDATE {ns}_jobs SET
        cancel_requested = (state = 'running'),
        state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
        result = CASE WHEN state = 'running' THEN result ELSE NULL END,
        error = CASE WHEN state = 'running' THEN error ELSE NULL END,
        finished_at = CASE WHEN state = 'running' THEN finished_at ELSE %(now)s END,
        purge_at = CASE WHEN state = 'running' THEN purge_at ELSE %(now)s + result_ttl END,
        parked = NULL
    WHERE id = %(id)s AND state IN ('scheduled', 'queued', 'running')
    RETURNING id
)
SELECT id, pg_notify('{channel}', 'c ' || id) FROM done;

-- name: retry
-- ON CONFLICT cannot guard an UPDATE: the caller catches the unique key's violation (another
-- active job of the same unique key) and reports False rather than making a twin.
WITH done AS (
    UPDATE {ns}_jobs SET
        state = 'queued', ready_at = %(now)s, expires_at = NULL, failures = 0, crashes = 0,
        result = NULL, error = NULL, finished_at = NULL, purge_at = NULL,
        cancel_requested = false, parked = NULL
    WHERE id = %(id)s AND state IN ('failed', 'cancelled', 'expired')
      AND ready_at < 253402300799.0  -- canvas.HOLD: a workflow step stopped while held
    RETURNING id, queue
)
SELECT id, pg_notify('{channel}', m)
FROM done, LATERAL (VALUES ('c ' || id), ('r ' || queue)) AS n(m);

-- name: sweep_purge
-- Index: {ns}_jobs_purge.
DELETE FROM {ns}_jobs WHERE purge_at <= %(now)s AND purge_at IS NOT NULL;

-- name: sweep_expire
-- Index: {ns}_jobs_expires.
UPDATE {ns}_jobs
SET state = 'expired', result = NULL, error = NULL, finished_at = %(now)s,
    purge_at = %(now)s + result_ttl, worker = NULL, lease_expires_at = NULL,
    cancel_requested = false, parked = NULL
WHERE expires_at <= %(now)s AND expires_at IS NOT NULL AND state IN ('scheduled', 'queued');

-- name: sweep_promote
-- Index: {ns}_jobs_scheduled.
WITH done AS (
    UPDATE {ns}_jobs SET state = 'queued' WHERE ready_at <= %(now)s AND state = 'scheduled'
    RETURNING queue
), told AS (
    SELECT pg_notify('{channel}', 'r ' || queue) FROM done GROUP BY queue
)
SELECT count(*) FROM done WHERE (SELECT count(*) FROM told) >= 0;

-- name: sweep_workers
DELETE FROM {ns}_workers WHERE last_seen < %(before)s;

-- Listing, newest first, from the cursor down (admin.py picks the statement): each one's
-- leading filter is a constant or a column of its index, so the plan (a generic one too,
-- once psycopg prepares it) is a range scan of that index that stops after LIMIT rows.

-- name: list_by_state
-- Index: {ns}_jobs_by_state (the IN list proves its predicate).
SELECT {columns} FROM {ns}_jobs
WHERE state = %(state)s::text AND state IN ('scheduled', 'failed', 'cancelled', 'expired')
  AND id < %(cursor)s::text
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_running
-- Index: {ns}_jobs_running; running jobs are few, sorted.
SELECT {columns} FROM {ns}_jobs
WHERE state = 'running' AND id < %(cursor)s::text
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_by_task
-- Index: {ns}_jobs_by_task, which leaves out running jobs (layout_3.sql: a claim writes no
-- entry in it), a range scan that stops after LIMIT rows; with no state asked for, the
-- running ones too, from {ns}_jobs_running (few), and the two parts sorted together. The
-- running part has no ORDER BY of its own: with one, the planner may walk the primary key
-- backwards past every newer job to find them.
SELECT {columns} FROM (
    (SELECT {columns} FROM {ns}_jobs
     WHERE task = %(task)s::text AND state <> 'running' AND id < %(cursor)s::text
       AND (%(state)s::text IS NULL OR state = %(state)s::text)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
     ORDER BY id DESC
     LIMIT %(limit)s)
    UNION ALL
    (SELECT {columns} FROM {ns}_jobs
     WHERE state = 'running' AND %(state)s::text IS NULL AND task = %(task)s::text
       AND id < %(cursor)s::text AND (%(queue)s::text IS NULL OR queue = %(queue)s::text))
) AS listed
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_by_queue
-- Index: {ns}_jobs_by_queue, and {ns}_jobs_running, as list_by_task.
SELECT {columns} FROM (
    (SELECT {columns} FROM {ns}_jobs
     WHERE queue = %(queue)s::text AND state <> 'running' AND id < %(cursor)s::text
       AND (%(state)s::text IS NULL OR state = %(state)s::text)
     ORDER BY id DESC
     LIMIT %(limit)s)
    UNION ALL
    (SELECT {columns} FROM {ns}_jobs
     WHERE state = 'running' AND %(state)s::text IS NULL AND queue = %(queue)s::text
       AND id < %(cursor)s::text)
) AS listed
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_jobs
-- Index: the primary key (succeeded and queued jobs are dense among the newest).
SELECT {columns} FROM {ns}_jobs
WHERE id < %(cursor)s::text AND (%(state)s::text IS NULL OR state = %(state)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- The change feed and the counters (layout_2.sql, inspection.py).

-- name: events_after
-- Index: the primary key. One row of nulls when there are none; every row also carries the
-- transactions in progress at this statement's snapshot (one of them may still fill a gap
-- in the ids) and the server's time.
SELECT e.id, e.job_id, e.task, e.state, e.progress, e.at, s.busy, s.now
FROM (
    SELECT ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x) AS busy,
           extract(epoch FROM clock_timestamp())::double precision AS now
) AS s
LEFT JOIN LATERAL (
    SELECT id, job_id, task, state, progress, at FROM {ns}_events
    WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
) AS e ON true
ORDER BY e.id;

-- name: xacts_busy
-- Whether any of these transactions is still in progress (a separate statement: the next
-- read's snapshot must be taken after this answer).
SELECT count(*) FROM unnest(%(xids)s::text[]) AS x
WHERE pg_xact_status(x::xid8) = 'in progress';

-- name: last_event_id
SELECT coalesce(max(id), 0) FROM {ns}_events;

-- name: sweep_events
DELETE FROM {ns}_events WHERE id <= (SELECT max(id) FROM {ns}_events) - %(keep)s;

-- name: sweep_counters
-- One row per key again; a concurrent finish's rows, not yet visible, stay as they are.
WITH gone AS (DELETE FROM {ns}_counters RETURNING task, kind, label, n, total)
INSERT INTO {ns}_counters (task, kind, label, n, total)
SELECT task, kind, label, sum(n), sum(total) FROM gone GROUP BY 1, 2, 3;

-- name: counters
-- Index: none needed: a row per key, plus the rows of the finishes since the last sweep.
SELECT task, kind, label, sum(n), sum(total) FROM {ns}_counters GROUP BY 1, 2, 3;

-- name: oldest_queued
-- The ready time of each queue's oldest queued job. Index: {ns}_jobs_queued, whose order is
-- priority first, so it is the oldest of the first entries of each priority: a loose index
-- scan over the queues, then over each queue's priorities, one probe each; parked jobs
-- (few) from {ns}_jobs_parked.
WITH RECURSIVE queues(q) AS (
    (SELECT queue FROM {ns}_jobs WHERE state = 'queued' AND parked IS NULL
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {ns}_jobs WHERE state = 'queued' AND parked IS NULL
            AND queue > queues.q ORDER BY queue LIMIT 1)
    FROM queues WHERE queues.q IS NOT NULL
), priorities(q, p) AS (
    SELECT q, (SELECT priority FROM {ns}_jobs WHERE state = 'queued' AND parked IS NULL
               AND queue = queues.q ORDER BY priority DESC LIMIT 1)
    FROM queues WHERE q IS NOT NULL
    UNION ALL
    SELECT q, (SELECT priority FROM {ns}_jobs WHERE state = 'queued' AND parked IS NULL
               AND queue = priorities.q AND priority < priorities.p
               ORDER BY priority DESC LIMIT 1)
    FROM priorities WHERE p IS NOT NULL
)
SELECT q, min((SELECT ready_at FROM {ns}_jobs WHERE state = 'queued' AND parked IS NULL
               AND queue = priorities.q AND priority = priorities.p
               ORDER BY ready_at LIMIT 1))
FROM priorities WHERE p IS NOT NULL GROUP BY q
UNION ALL
SELECT queue, min(ready_at) FROM {ns}_jobs
WHERE parked IS NOT NULL AND state = 'queued' GROUP BY queue;

-- name: queue_counts
SELECT queue, state, count(*) FROM {ns}_jobs GROUP BY queue, state;

-- name: purge_queue
DELETE FROM {ns}_jobs WHERE queue = %(queue)s AND state IN ('scheduled', 'queued');

-- name: put_worker
INSERT INTO {ns}_workers
    (id, host, pid, queues, concurrency, pool, started_at, last_seen, running, processed, failed)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, %(pool)s, %(started_at)s,
        %(last_seen)s, %(running)s, %(processed)s, %(failed)s)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, queues = excluded.queues,
    concurrency = excluded.concurrency, pool = excluded.pool,
    started_at = excluded.started_at, last_seen = excluded.last_seen,
    running = excluded.running, processed = excluded.processed, failed = excluded.failed;

-- name: delete_worker
DELETE FROM {ns}_workers WHERE id = %(id)s;

-- name: workers
SELECT id, host, pid, queues, concurrency, pool, started_at, last_seen, running, processed,
       failed
FROM {ns}_workers ORDER BY started_at, id;

-- name: schedule_row
INSERT INTO {ns}_schedules (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING;

-- name: schedule_lock
-- Taken FOR UPDATE: concurrent record_due calls for one task wait here, one after another.
SELECT last_due, last_job_id FROM {ns}_schedules WHERE name = %(name)s FOR UPDATE;

-- name: record_skipped
UPDATE {ns}_schedules SET last_due = %(due)s WHERE name = %(name)s;

-- name: record_enqueued
UPDATE {ns}_schedules
SET last_due = %(due)s, last_job_id = %(job_id)s, last_enqueued_at = %(now)s
WHERE name = %(name)s;

-- name: schedules
SELECT name, last_due, last_job_id, last_enqueued_at FROM {ns}_schedules
WHERE last_due IS NOT NULL ORDER BY name;

-- name: ping
SELECT 1;

-- Workflows (postgres/flows.py), inside the transaction of the operation that made a
-- workflow job final. "meta ? 'flow'" picks workflow jobs.

-- name: flow_insert_workflow
INSERT INTO {ns}_workflows (id, jobs, live) VALUES (%(id)s, %(jobs)s, %(live)s);

-- name: flow_expect
INSERT INTO {ns}_flow_filled (job_id, filled, need)
SELECT job_id, 0, need FROM unnest(%(ids)s::text[], %(needs)s::integer[]) AS t(job_id, need);

-- name: flow_workflow
SELECT w.value ->> 0, w.value ->> 1, (w.value ->> 2)::boolean, j.state
FROM {ns}_workflows AS f
CROSS JOIN LATERAL jsonb_array_elements(f.jobs) WITH ORDINALITY AS w(value, n)
LEFT JOIN {ns}_jobs AS j ON j.id = w.value ->> 0
WHERE f.id = %(id)s
ORDER BY w.n;

-- name: flow_exists
SELECT 1 FROM {ns}_workflows WHERE id = %(id)s;

-- name: flow_finished
SELECT id, state, result, error, meta -> 'flow' FROM {ns}_jobs
WHERE id = ANY(%(ids)s::text[]) AND meta ? 'flow'
  AND state IN ('succeeded', 'failed', 'cancelled', 'expired');

-- name: flow_step
-- FOR UPDATE: the successor's row is this transaction's until it commits, so members that
-- finish at once on different machines decide it one after another.
SELECT state, ready_at, meta -> 'flow' FROM {ns}_jobs WHERE id = %(id)s FOR UPDATE;

-- name: flow_put_input
-- Only while the step is held (scheduled at canvas.HOLD), and once per slot.
INSERT INTO {ns}_flow_inputs (job_id, slot, value)
SELECT %(id)s, %(slot)s, %(value)s
WHERE EXISTS (
    SELECT 1 FROM {ns}_jobs WHERE id = %(id)s AND state = 'scheduled' AND ready_at >= %(hold)s
)
ON CONFLICT DO NOTHING
RETURNING job_id;

-- name: flow_count_input
UPDATE {ns}_flow_filled SET filled = filled + 1 WHERE job_id = %(id)s RETURNING filled >= need;

-- name: flow_inputs
SELECT value FROM {ns}_flow_inputs WHERE job_id = %(id)s ORDER BY slot;

-- name: flow_drop
WITH inputs AS (DELETE FROM {ns}_flow_inputs WHERE job_id = %(id)s)
DELETE FROM {ns}_flow_filled WHERE job_id = %(id)s;

-- name: flow_promote
WITH done AS (
    UPDATE {ns}_jobs SET state = 'queued', ready_at = %(now)s, payload = %(payload)s
    WHERE id = %(id)s AND state = 'scheduled'
    RETURNING id, queue
)
SELECT pg_notify('{channel}', m)
FROM done, LATERAL (VALUES ('c ' || id), ('r ' || queue)) AS n(m);

-- name: flow_payload
SELECT payload FROM {ns}_jobs WHERE id = %(id)s;

-- name: flow_end
WITH done AS (
    UPDATE {ns}_jobs
    SET state = %(state)s, error = %(error)s, finished_at = %(now)s,
        purge_at = %(now)s + result_ttl
    WHERE id = %(id)s AND state = 'scheduled'
    RETURNING id
)
SELECT pg_notify('{channel}', 'c ' || id) FROM done;

-- name: flow_expiring
SELECT id FROM {ns}_jobs
WHERE expires_at <= %(now)s AND expires_at IS NOT NULL AND state IN ('scheduled', 'queued')
  AND meta ? 'flow';

-- name: flow_purging
-- Before the sweep purges: count the purged jobs off their workflows.
WITH gone AS (
    SELECT meta ->> 'workflow' AS id, count(*) AS n FROM {ns}_jobs
    WHERE purge_at <= %(now)s AND purge_at IS NOT NULL AND meta ? 'workflow'
    GROUP BY 1
)
UPDATE {ns}_workflows AS f SET live = f.live - gone.n FROM gone WHERE f.id = gone.id;

-- name: flow_forget
-- (A statement of its own: one statement cannot delete the rows its own CTE updated.)
DELETE FROM {ns}_workflows WHERE live <= 0;

-- Limits (postgres/limits.py), inside the claim's transaction. A ref is "name\x1fkey".

-- name: limit_put
INSERT INTO {ns}_limits (name, rate_count, rate_seconds, concurrency)
VALUES (%(name)s, %(rate_count)s, %(rate_seconds)s, %(concurrency)s)
ON CONFLICT (name) DO UPDATE SET rate_count = excluded.rate_count,
    rate_seconds = excluded.rate_seconds, concurrency = excluded.concurrency;

-- name: limit_specs
SELECT name, rate_count, rate_seconds, concurrency FROM {ns}_limits;

-- name: limit_lock
-- One lock per ref, held to the end of the claim's transaction: claims that count the same
-- ref do it one after another, and each sees the other's committed claims.
SELECT pg_advisory_xact_lock(hashtext(%(lock)s));

-- name: limit_running
-- Index: {ns}_jobs_running; running jobs are few.
SELECT count(*) FROM {ns}_jobs
WHERE state = 'running' AND lease_expires_at >= %(t)s
  AND meta -> 'limits' @> jsonb_build_array(jsonb_build_array(%(name)s::text, %(key)s::text));

-- name: limit_started
-- No upper bound: a claim that read the clock before it waited for this ref's lock must
-- still count the starts stamped, a little later, by the claim it waited for.
SELECT count(*) FROM {ns}_limit_starts
WHERE name = %(name)s AND key = %(key)s AND at > %(t)s - %(seconds)s;

-- name: limit_parked_refs
-- The refs that hold parked jobs: one index probe per ref (a loose index scan), never a
-- walk over the parked jobs themselves.
WITH RECURSIVE refs(ref) AS (
    (SELECT parked FROM {ns}_jobs WHERE parked IS NOT NULL ORDER BY parked LIMIT 1)
    UNION ALL
    SELECT (SELECT parked FROM {ns}_jobs WHERE parked IS NOT NULL AND parked > refs.ref
            ORDER BY parked LIMIT 1)
    FROM refs WHERE refs.ref IS NOT NULL
)
SELECT ref FROM refs WHERE ref IS NOT NULL;

-- name: limit_unpark
-- Index: {ns}_jobs_parked. As many as the ref admits now come back, best first.
UPDATE {ns}_jobs SET parked = NULL
WHERE id IN (
    SELECT id FROM {ns}_jobs WHERE parked = %(ref)s
    ORDER BY priority DESC, ready_at, id LIMIT %(n)s
);

-- name: limit_candidates
-- Index: {ns}_jobs_queued per queue, {ns}_jobs_scheduled for the due ones, as in claim.
SELECT c.id, c.state, c.meta -> 'limits' FROM (
    SELECT ready.* FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT id, state, priority, ready_at, meta FROM {ns}_jobs
        WHERE state = 'queued' AND parked IS NULL AND queue = q.name
          AND (expires_at IS NULL OR expires_at > %(now)s) AND NOT id = ANY(%(skip)s::text[])
        ORDER BY priority DESC, ready_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS ready
    UNION ALL
    SELECT due.* FROM (
        SELECT id, state, priority, ready_at, meta FROM {ns}_jobs
        WHERE state = 'scheduled' AND ready_at <= %(now)s AND queue = ANY(%(queues)s::text[])
          AND (expires_at IS NULL OR expires_at > %(now)s) AND NOT id = ANY(%(skip)s::text[])
        ORDER BY ready_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS due
) AS c
ORDER BY c.priority DESC, c.ready_at, c.id
LIMIT %(limit)s;

-- name: limit_park
UPDATE {ns}_jobs SET parked = %(ref)s WHERE id = %(id)s AND state = 'queued';

-- name: limit_claim
WITH claimed AS (
    UPDATE {ns}_jobs AS j
    SET state = 'running', attempts = j.attempts + 1, token = j.token + 1,
        worker = %(worker)s, started_at = %(t)s, lease_expires_at = %(t)s + %(lease_seconds)s
    WHERE j.id = ANY(%(ids)s::text[]) AND j.state IN ('queued', 'scheduled')
    RETURNING {j_columns}
), claim_events AS (
    INSERT INTO {ns}_events (job_id, task, state, at)
    SELECT id, task, 'running', extract(epoch FROM clock_timestamp()) FROM claimed
)
SELECT claimed.* FROM claimed;

-- name: limit_note_starts
INSERT INTO {ns}_limit_starts (name, key, at)
SELECT name, key, %(t)s FROM unnest(%(names)s::text[], %(keys)s::text[]) AS s(name, key);

-- name: limit_uses
-- limits(): per stored limit and key, the live running jobs and the starts in the window.
SELECT l.name, r.ref ->> 1 AS key, count(*) AS running
FROM {ns}_limits AS l
JOIN {ns}_jobs AS j ON j.state = 'running' AND j.lease_expires_at >= %(t)s
CROSS JOIN LATERAL jsonb_array_elements(j.meta -> 'limits') AS r(ref)
WHERE r.ref ->> 0 = l.name
GROUP BY 1, 2;

-- name: limit_started_all
SELECT s.name, s.key, count(*) FROM {ns}_limit_starts AS s JOIN {ns}_limits AS l
    ON l.name = s.name
WHERE l.rate_seconds IS NOT NULL AND s.at > %(t)s - l.rate_seconds AND s.at <= %(t)s
GROUP BY 1, 2;

-- name: limit_prune
DELETE FROM {ns}_limit_starts WHERE at <= %(before)s;
