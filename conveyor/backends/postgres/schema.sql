-- The tables of one namespace, layout version 1. {ns} becomes the namespace, so several apps
-- share one database. Columns follow conveyor.job.JobRecord field for field; times are POSIX
-- seconds (double precision, exact for the floats the contract passes), error / progress /
-- meta are jsonb.
--
-- A queue's table is mostly short-lived rows: each job is inserted, updated two or three
-- times and deleted when its result_ttl runs out. fillfactor 70 leaves room in every page for
-- the new row versions of those updates (HOT updates, which write no index entry when no
-- indexed column changes), and autovacuum is told to visit the table after 1 % of it changed
-- rather than PostgreSQL's default of 20 %, and without sleeping between pages, so dead rows
-- are reclaimed while the table is small. docs/postgres.md says why, with numbers.

CREATE TABLE IF NOT EXISTS {ns}_jobs (
    id               text COLLATE "C" PRIMARY KEY,  -- hex: byte order is time order
    task             text NOT NULL,
    payload          bytea NOT NULL,
    queue            text NOT NULL,
    priority         integer NOT NULL,
    state            text NOT NULL,
    "key"            text,
    unique_key       text,
    attempts         integer NOT NULL,
    failures         integer NOT NULL,
    crashes          integer NOT NULL,
    created_at       double precision NOT NULL,
    ready_at         double precision NOT NULL,
    expires_at       double precision,
    started_at       double precision,
    finished_at      double precision,
    purge_at         double precision,
    result_ttl       double precision NOT NULL,
    result           bytea,
    error            jsonb,
    progress         jsonb,
    worker           text,
    token            bigint NOT NULL,   -- bumped by every claim, release and recovery
    lease_expires_at double precision,
    cancel_requested boolean NOT NULL,
    meta             jsonb NOT NULL,
    parked           text               -- a held job's blocking limit ref (limits.py)
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- A key is held until the job is purged, whatever its state.
CREATE UNIQUE INDEX IF NOT EXISTS {ns}_jobs_key ON {ns}_jobs ("key") WHERE "key" IS NOT NULL;

-- A unique key is held only while the job is scheduled, queued or running.
CREATE UNIQUE INDEX IF NOT EXISTS {ns}_jobs_unique_key ON {ns}_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');

-- Claiming, one queue at a time: an ordered range scan that stops after LIMIT rows. Only
-- queued jobs are in it, and not those parked behind a limit, so a claim never walks past
-- running, finished, future or held-back jobs.
CREATE INDEX IF NOT EXISTS {ns}_jobs_queued ON {ns}_jobs (queue, priority DESC, ready_at, id)
    WHERE state = 'queued' AND parked IS NULL;

-- Parked jobs by the limit ref that holds them back, in the order they come back.
CREATE INDEX IF NOT EXISTS {ns}_jobs_parked ON {ns}_jobs (parked, priority DESC, ready_at, id)
    WHERE parked IS NOT NULL;

-- Scheduled jobs by time: the claim takes the due ones from its head, sweep promotes them.
CREATE INDEX IF NOT EXISTS {ns}_jobs_scheduled ON {ns}_jobs (ready_at)
    WHERE state = 'scheduled';

-- recover: leases that ran out.
CREATE INDEX IF NOT EXISTS {ns}_jobs_running ON {ns}_jobs (lease_expires_at)
    WHERE state = 'running';

-- sweep: unstarted jobs past expires_at, final jobs past purge_at.
CREATE INDEX IF NOT EXISTS {ns}_jobs_expires ON {ns}_jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('scheduled', 'queued');

CREATE INDEX IF NOT EXISTS {ns}_jobs_purge ON {ns}_jobs (purge_at) WHERE purge_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {ns}_workers (
    id          text PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    queues      jsonb NOT NULL,
    concurrency integer NOT NULL,
    pool        text NOT NULL,
    started_at  double precision NOT NULL,
    last_seen   double precision NOT NULL,
    running     jsonb NOT NULL,
    processed   bigint NOT NULL,
    failed      bigint NOT NULL
) WITH (fillfactor = 50);

CREATE TABLE IF NOT EXISTS {ns}_schedules (
    name             text PRIMARY KEY,
    last_due         double precision,
    last_job_id      text,
    last_enqueued_at double precision
);

-- The store-wide heartbeat record (see base.py, heartbeat and recover), in the store's time:
-- one row, locked by each heartbeat while it updates it.
CREATE TABLE IF NOT EXISTS {ns}_beats (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    quiet_after double precision,
    stall_until double precision
);
INSERT INTO {ns}_beats (one) VALUES (true) ON CONFLICT DO NOTHING;

-- Workflows (backends/flow.py): the graph is in each job's meta; these hold the rest. A
-- workflow's jobs in order, as JSON [[id, task, output], ...], and how many are not purged.
CREATE TABLE IF NOT EXISTS {ns}_workflows (
    id   text PRIMARY KEY,
    jobs jsonb NOT NULL,
    live integer NOT NULL
);

-- The inputs of a held step that have arrived, one row per slot ('r' + result or
-- 'f' + failure JSON), until the last one queues the step.
CREATE TABLE IF NOT EXISTS {ns}_flow_inputs (
    job_id text NOT NULL,
    slot   integer NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (job_id, slot)
);

-- How many slots of a held step are filled, of how many: one row per held step, written at
-- enqueue; a finish takes its row lock, so members finishing at once count one by one.
CREATE TABLE IF NOT EXISTS {ns}_flow_filled (
    job_id text PRIMARY KEY,
    filled integer NOT NULL,
    need   integer NOT NULL
);

-- Cluster-wide limits (conveyor/limits.py): the stored limits, and the claims of limits with
-- a rate, by ref and store time, kept for the longest period a rate may have.
CREATE TABLE IF NOT EXISTS {ns}_limits (
    name         text PRIMARY KEY,
    rate_count   integer,
    rate_seconds double precision,
    concurrency  integer
);

CREATE TABLE IF NOT EXISTS {ns}_limit_starts (
    name text NOT NULL,
    key  text NOT NULL,
    at   double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {ns}_limit_starts_ref ON {ns}_limit_starts (name, key, at);
