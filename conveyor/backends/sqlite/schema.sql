-- The tables of one namespace. {ns} becomes the namespace, so several apps share one file.
-- Columns follow conveyor.job.JobRecord field for field; times are POSIX seconds (REAL),
-- error / progress / meta are JSON text.
--
-- Partial indexes must be matched literally by the queries that use them (SQLite proves
-- that a query's WHERE implies the index's WHERE by comparing the expressions), so the
-- queries in queries.sql repeat these WHERE clauses word for word.

CREATE TABLE IF NOT EXISTS {ns}_jobs (
    id               TEXT PRIMARY KEY,
    task             TEXT NOT NULL,
    payload          BLOB NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    "key"            TEXT,
    unique_key       TEXT,
    attempts         INTEGER NOT NULL,
    failures         INTEGER NOT NULL,
    crashes          INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    ready_at         REAL NOT NULL,
    expires_at       REAL,
    started_at       REAL,
    finished_at      REAL,
    purge_at         REAL,
    result_ttl       REAL NOT NULL,
    result           BLOB,
    error            TEXT,
    progress         TEXT,
    worker           TEXT,
    token            INTEGER NOT NULL,   -- bumped by every claim, release and recovery
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL,
    meta             TEXT NOT NULL,
    held             TEXT                -- not a JobRecord field: see limits.sql
) WITHOUT ROWID;
-- WITHOUT ROWID: the table is one B-tree ordered by id, so an insert writes one tree less
-- (no separate primary-key index) and every lookup by id is one search, not two.

-- A key is held until the job is purged, whatever its state.
CREATE UNIQUE INDEX IF NOT EXISTS {ns}_jobs_key
    ON {ns}_jobs ("key") WHERE "key" IS NOT NULL;

-- A unique key is held only while the job is scheduled, queued or running.
CREATE UNIQUE INDEX IF NOT EXISTS {ns}_jobs_unique_key
    ON {ns}_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');

-- Claiming, one queue at a time, is served by {ns}_jobs_to_claim (limits.sql): an ordered
-- range scan that stops after LIMIT rows. Scheduled jobs have an index of their own, by
-- time, so that many jobs waiting for a later time are never walked past by a claim.
CREATE INDEX IF NOT EXISTS {ns}_jobs_scheduled
    ON {ns}_jobs (ready_at) WHERE state = 'scheduled';

-- recover: leases that ran out.
CREATE INDEX IF NOT EXISTS {ns}_jobs_running
    ON {ns}_jobs (lease_expires_at) WHERE state = 'running';

-- sweep: unstarted jobs past expires_at, final jobs past purge_at.
CREATE INDEX IF NOT EXISTS {ns}_jobs_expires
    ON {ns}_jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('scheduled', 'queued');

CREATE INDEX IF NOT EXISTS {ns}_jobs_purge
    ON {ns}_jobs (purge_at) WHERE purge_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {ns}_workers (
    id          TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    queues      TEXT NOT NULL,      -- JSON list
    concurrency INTEGER NOT NULL,
    pool        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    running     TEXT NOT NULL,      -- JSON list of job ids
    processed   INTEGER NOT NULL,
    failed      INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS {ns}_schedules (
    name             TEXT PRIMARY KEY,
    last_due         REAL,
    last_job_id      TEXT,
    last_enqueued_at REAL
);

-- The store-wide heartbeat record (see base.py, heartbeat and recover): one row per name,
-- 'quiet_after' and 'stall_until', in the store's time.
CREATE TABLE IF NOT EXISTS {ns}_beats (
    name TEXT PRIMARY KEY,
    at   REAL NOT NULL
);

-- Workflows (backends/flow.py): the graph is in each job's meta; these hold the rest. A
-- workflow's jobs in order, as JSON [[id, task, output], ...], and how many are not purged.
CREATE TABLE IF NOT EXISTS {ns}_workflows (
    id   TEXT PRIMARY KEY,
    jobs TEXT NOT NULL,
    live INTEGER NOT NULL
) WITHOUT ROWID;

-- The inputs of a held step that have arrived, one row per slot ('r' + result or
-- 'f' + failure JSON), until the last one queues the step.
CREATE TABLE IF NOT EXISTS {ns}_flow_inputs (
    job_id TEXT NOT NULL,
    slot   INTEGER NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (job_id, slot)
) WITHOUT ROWID;

-- How many slots of a held step are filled, of how many: one row per held step, written at
-- enqueue, so a finish counts in O(1).
CREATE TABLE IF NOT EXISTS {ns}_flow_filled (
    job_id TEXT PRIMARY KEY,
    filled INTEGER NOT NULL,
    need   INTEGER NOT NULL
) WITHOUT ROWID;

-- Listing (app.jobs, newest first): each filter has an index ordered by id, so a page is a
-- range scan that stops after LIMIT rows, whatever the table holds. The state index covers
-- only the states no successful job passes through (a succeeded job never writes it);
-- queued jobs are listed from {ns}_jobs_queued, running ones from {ns}_jobs_running.
CREATE INDEX IF NOT EXISTS {ns}_jobs_by_task ON {ns}_jobs (task, id);

-- Not (queue, state, id): an index holding the state is rewritten by every claim and
-- finish, which cost the hot path more than the feed and the counters together.
CREATE INDEX IF NOT EXISTS {ns}_jobs_by_queue ON {ns}_jobs (queue, id);

-- The states are cancelled < expired < failed < queued < running < scheduled < succeeded:
-- "state < 'queued' OR state = 'scheduled'" names scheduled, failed, cancelled and expired.
-- Not "state IN (...)": every UPDATE of state evaluates a partial index's WHERE, and an IN
-- list costs SQLite a temporary table each time (the claim/finish path doubled in cost).
-- The queue last: pages by state stay ranges by id, and queue_counts counts these states by
-- queue from the index alone, without a look-up in the table per job (files made before had
-- {ns}_jobs_by_state, on (state, id)).
CREATE INDEX IF NOT EXISTS {ns}_jobs_in_state
    ON {ns}_jobs (state, id, queue) WHERE state < 'queued' OR state = 'scheduled';
DROP INDEX IF EXISTS {ns}_jobs_by_state;

-- The change feed (app.events, SSE), written inside the transaction that makes the change,
-- so the feed and the jobs never disagree. A row is either one event (job_id, task, state,
-- progress: the enqueue trigger below, the progress trigger at the end) or, with batch set,
-- the changes one statement made to several jobs, [[job_id, task, state], ...] in JSON,
-- written by the backend (feed.py: claims, finishes, and the rare paths). Event ids are
-- row id * 1024 + the index in the row, so they increase in commit order (one writer at a
-- time) and a reader resumes in the middle of a row. sweep keeps the newest rows only.
CREATE TABLE IF NOT EXISTS {ns}_events (
    id       INTEGER PRIMARY KEY,
    job_id   TEXT NOT NULL,
    task     TEXT NOT NULL,
    state    TEXT NOT NULL,
    progress TEXT,              -- set on progress events
    at       REAL NOT NULL,     -- the store's clock, POSIX seconds
    -- a batch row's changes, JSON (its job_id, task and state are then '')
    batch    TEXT
);

-- Transactional enqueue writes through the user's own connection: a trigger sees it too.
CREATE TRIGGER IF NOT EXISTS {ns}_jobs_event_insert AFTER INSERT ON {ns}_jobs
BEGIN
    INSERT INTO {ns}_events (job_id, task, state, progress, at)
    VALUES (new.id, new.task, new.state, NULL, {clock});
END;

-- Counters per task for /metrics (app.stats), written in the finishing transaction: kind is
-- the final state (succeeded or failed) with label the run-time bucket's bound and total the
-- run times' sum, or 'error' with label the error type of a final failure (queries.sql
-- count_ended, count_errors: one upsert per distinct key per batch), or 'retries' (label '',
-- count_retries). They outlive the purge of the jobs.
CREATE TABLE IF NOT EXISTS {ns}_counters (
    task  TEXT NOT NULL,
    kind  TEXT NOT NULL,
    label TEXT NOT NULL,
    n     INTEGER NOT NULL,
    total REAL NOT NULL,
    PRIMARY KEY (task, kind, label)
) WITHOUT ROWID;

-- No trigger on updates of state: a trigger costs every UPDATE that sets its columns a
-- sub-program call and an event row per job, which cost the claim/finish path more than
-- everything else the feed needs; the backend writes one row per statement instead
-- (feed.py). Files made before kept such a trigger.
DROP TRIGGER IF EXISTS {ns}_jobs_changed;

-- Progress: only set_progress sets the column, so this trigger costs no other statement.
CREATE TRIGGER IF NOT EXISTS {ns}_jobs_progress AFTER UPDATE OF progress ON {ns}_jobs
WHEN old.progress IS NOT new.progress
BEGIN
    INSERT INTO {ns}_events (job_id, task, state, progress, at)
    VALUES (new.id, new.task, new.state, new.progress, {clock});
END;
