-- Cluster-wide limits (conveyor/limits.py): the tables, then the statements, one per
-- "-- name:" section as in queries.sql. A ref is "<limit name>\x1f<key>".
--
-- A job that a limit holds back stays queued, but the claim parks it: `held` names the ref
-- it waits for, which takes it out of the ready index (whose WHERE says held IS NULL), so a
-- claim never walks a backlog of held jobs again. A row of {ns}_limit_wake says when a ref
-- with parked jobs may admit again; claims look at the rows that are due and bring back as
-- many parked jobs as the ref admits. No counter is kept that a crash could leak: a
-- concurrency slot counts only while its job runs under the same token with a live lease.

-- schema: (run by initialise after the held column exists)
-- state and held last, though the WHERE fixes them: SQLite (3.40) reads a partial index alone
-- only when it holds every column a query names, its WHERE's included, so queue_counts and
-- count_queued count from it without a look-up in the table per job. Files made before had
-- {ns}_jobs_ready (without them), and before that {ns}_jobs_queued.
CREATE INDEX IF NOT EXISTS {ns}_jobs_to_claim
    ON {ns}_jobs (queue, priority DESC, ready_at, id, state, held)
    WHERE state = 'queued' AND held IS NULL;
DROP INDEX IF EXISTS {ns}_jobs_ready;
DROP INDEX IF EXISTS {ns}_jobs_queued;

-- Parked jobs by ref. Its WHERE does not name the state: SQLite opens every index whose WHERE
-- names a column that an UPDATE sets, and tests it for the row, so an index on state = ...
-- costs every claim and every finish (some 1,400 instructions each). A job has held set only
-- while queued (cancel_waiting and sweep_expire clear it), and the queries say state =
-- 'queued' all the same (a file written by an older conveyor may keep held on a cancelled
-- job). Files made before had {ns}_jobs_held, WHERE state = 'queued' AND held IS NOT NULL.
CREATE INDEX IF NOT EXISTS {ns}_jobs_parked
    ON {ns}_jobs (held, priority DESC, ready_at, id) WHERE held IS NOT NULL;
DROP INDEX IF EXISTS {ns}_jobs_held;

CREATE TABLE IF NOT EXISTS {ns}_limits (
    name         TEXT PRIMARY KEY,
    rate_count   INTEGER,
    rate_seconds REAL,
    concurrency  INTEGER
);

CREATE TABLE IF NOT EXISTS {ns}_limit_slots (
    ref    TEXT NOT NULL,
    job_id TEXT NOT NULL,
    token  INTEGER NOT NULL,        -- the claim's token: the slot dies with the claim
    PRIMARY KEY (ref, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {ns}_limit_slots_job ON {ns}_limit_slots (job_id);

CREATE TABLE IF NOT EXISTS {ns}_limit_starts (
    ref TEXT NOT NULL,
    at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {ns}_limit_starts_ref ON {ns}_limit_starts (ref, at);

CREATE TABLE IF NOT EXISTS {ns}_limit_wake (
    ref TEXT PRIMARY KEY,
    at  REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {ns}_limit_wake_at ON {ns}_limit_wake (at);

-- name: ready_first
-- The first look of a claim on one queue: ready_queued, whose flags (the fifth column: 1 is
-- rows.RARE) also tell whether a scheduled job of :queue is due (2: ready_scheduled then
-- reads them, whose ORDER BY costs a temporary table that every claim would pay here) and
-- whether a ref with parked jobs is due back (4: {ns}_limit_wake_at). Each EXISTS runs once
-- per statement, not per row. Not a UNION ALL of the three parts: every row would be copied
-- out of a co-routine (some 3,700 instructions a job); when no job is ready, the backend
-- looks at the other two by their own statements.
SELECT id, priority, ready_at, meta,
       {rare}
       | 2 * EXISTS (SELECT 1 FROM {ns}_jobs INDEXED BY {ns}_jobs_scheduled
                     WHERE state = 'scheduled' AND ready_at <= :now
                       AND (expires_at IS NULL OR expires_at > :now) AND queue = :queue)
       | 4 * EXISTS (SELECT 1 FROM {ns}_limit_wake WHERE at <= :t),
       {ready}
FROM {ns}_jobs
WHERE state = 'queued' AND held IS NULL AND queue = :queue AND ready_at <= :now
  AND (expires_at IS NULL OR expires_at > :now)
ORDER BY priority DESC, ready_at, id
LIMIT :limit;

-- name: ready_queued
-- {ns}_jobs_to_claim: the head of one queue, held jobs left out by the index itself.
SELECT id, priority, ready_at, meta, {rare}, {ready} FROM {ns}_jobs
WHERE state = 'queued' AND held IS NULL AND queue = :queue AND ready_at <= :now
  AND (expires_at IS NULL OR expires_at > :now)
ORDER BY priority DESC, ready_at, id
LIMIT :limit;

-- name: ready_scheduled
-- {ns}_jobs_scheduled: scheduled jobs whose time came (never held: only queued jobs are);
-- INDEXED BY: the listing index by queue would otherwise tempt the planner (queue IN ...)
SELECT id, priority, ready_at, meta, {rare}, {ready} FROM {ns}_jobs INDEXED BY {ns}_jobs_scheduled
WHERE state = 'scheduled' AND ready_at <= :now
  AND (expires_at IS NULL OR expires_at > :now)
  AND queue IN (SELECT value FROM json_each(:queues))
ORDER BY priority DESC, ready_at, id
LIMIT :limit;

-- name: limit_get
SELECT rate_count, rate_seconds, concurrency FROM {ns}_limits WHERE name = ?;

-- name: limit_put
INSERT OR REPLACE INTO {ns}_limits (name, rate_count, rate_seconds, concurrency)
VALUES (:name, :rate_count, :rate_seconds, :concurrency);

-- name: limit_all
SELECT name, rate_count, rate_seconds, concurrency FROM {ns}_limits ORDER BY name;

-- name: limit_refs
SELECT ref FROM {ns}_limit_slots UNION SELECT ref FROM {ns}_limit_starts;

-- name: limit_slots
-- The slots of one ref, each with whether it still counts.
SELECT s.job_id, j.lease_expires_at,
       coalesce(j.state = 'running' AND j.token = s.token AND j.lease_expires_at >= :now, 0)
FROM {ns}_limit_slots AS s LEFT JOIN {ns}_jobs AS j ON j.id = s.job_id
WHERE s.ref = :ref;

-- name: limit_drop_slot
DELETE FROM {ns}_limit_slots WHERE ref = :ref AND job_id = :job_id;

-- name: limit_take_slot
INSERT OR REPLACE INTO {ns}_limit_slots (ref, job_id, token) VALUES (:ref, :job_id, :token);

-- name: limit_forget_starts
DELETE FROM {ns}_limit_starts WHERE ref = :ref AND at <= :since;

-- name: limit_starts
SELECT count(*), min(at) FROM {ns}_limit_starts WHERE ref = :ref;

-- name: limit_start
INSERT INTO {ns}_limit_starts (ref, at) VALUES (:ref, :now);

-- name: limit_park
-- Only a queued job: a scheduled one is held back until sweep promotes it, then parked.
UPDATE {ns}_jobs SET held = :ref WHERE id = :id AND state = 'queued';

-- name: limit_wake_at
INSERT INTO {ns}_limit_wake (ref, at) VALUES (:ref, :at)
ON CONFLICT (ref) DO UPDATE SET at = min(at, excluded.at);

-- name: limit_wake_set
UPDATE {ns}_limit_wake SET at = :at WHERE ref = :ref;

-- name: limit_wake_drop
DELETE FROM {ns}_limit_wake WHERE ref = :ref;

-- name: limits_due
-- {ns}_limit_wake_at
SELECT ref FROM {ns}_limit_wake WHERE at <= :now ORDER BY at LIMIT :limit;

-- name: limits_next
-- {ns}_limit_wake_at: the earliest wake time (an idle worker's look before it waits)
SELECT min(at) FROM {ns}_limit_wake;

-- name: limit_unpark
-- {ns}_jobs_parked: the best parked jobs of one ref go back to the ready index.
UPDATE {ns}_jobs SET held = NULL
WHERE id IN (
    SELECT id FROM {ns}_jobs WHERE state = 'queued' AND held IS NOT NULL AND held = :ref
    ORDER BY priority DESC, ready_at, id LIMIT :limit
);

-- name: limit_has_parked
SELECT 1 FROM {ns}_jobs WHERE state = 'queued' AND held IS NOT NULL AND held = :ref LIMIT 1;

-- name: limit_release
-- A finished (or handed back) claim frees its slots at once; its refs' parked jobs are
-- looked at by the next claim.
DELETE FROM {ns}_limit_slots WHERE job_id IN (SELECT value FROM json_each(:ids)) RETURNING ref;

-- name: limit_wake_now
-- Due at 0, not at a time: the caller's clock is not the store's.
UPDATE {ns}_limit_wake SET at = 0 WHERE ref = :ref AND at > 0;

-- name: limit_wake_name
UPDATE {ns}_limit_wake SET at = 0 WHERE ref >= :low AND ref < :high;

-- name: limit_sweep_starts
DELETE FROM {ns}_limit_starts WHERE at <= :before;

-- name: limit_sweep_slots
DELETE FROM {ns}_limit_slots
WHERE job_id NOT IN (SELECT id FROM {ns}_jobs WHERE state = 'running');
