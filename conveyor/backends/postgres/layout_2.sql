-- Layout version 2: the change feed, the counters and the listing indexes of the inspection
-- side (docs/inspection.md). Additive only: new tables, a trigger, new indexes.

-- The change feed (app.events, SSE): one row per change of a job, written by the triggers
-- below inside the transaction that makes the change, whichever statement made it (a user's
-- own transaction, for transactional enqueue, too). A sequence hands out ids when the row is
-- written, not when it commits, so two transactions may commit out of id order for a moment:
-- read_events (inspection.py) returns an event after a gap in the ids only once no
-- transaction that could still fill the gap is in progress. sweep keeps the newest rows.
CREATE TABLE IF NOT EXISTS {ns}_events (
    id       bigserial PRIMARY KEY,
    job_id   text NOT NULL,
    task     text NOT NULL,
    state    text NOT NULL,
    progress jsonb,                       -- set on progress events
    at       double precision NOT NULL    -- the server's clock, POSIX seconds
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);

-- One row trigger for inserts, one for updates of state or progress: the WHEN clause is
-- checked without calling the function, and the column list keeps lease renewals (the
-- heartbeat) from even checking it. The hot path writes its own events, cheaper, in a CTE of
-- its statement (queries.sql: the claim and finish parts, limit_claim), so the trigger leaves
-- out what those write: a claim (to running from another state) and a finish (from running,
-- fenced by the same token; release and recover change the token).
CREATE OR REPLACE FUNCTION {ns}_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {ns}_events (job_id, task, state, progress, at)
    VALUES (NEW.id, NEW.task, NEW.state,
            CASE WHEN TG_OP = 'UPDATE' AND OLD.progress IS DISTINCT FROM NEW.progress
                 THEN NEW.progress END,
            extract(epoch FROM clock_timestamp()));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS {ns}_jobs_event_insert ON {ns}_jobs;
CREATE TRIGGER {ns}_jobs_event_insert AFTER INSERT ON {ns}_jobs
    FOR EACH ROW EXECUTE FUNCTION {ns}_job_event();

DROP TRIGGER IF EXISTS {ns}_jobs_event_change ON {ns}_jobs;
CREATE TRIGGER {ns}_jobs_event_change AFTER UPDATE OF state, progress ON {ns}_jobs
    FOR EACH ROW
    WHEN (OLD.progress IS DISTINCT FROM NEW.progress
          OR (OLD.state IS DISTINCT FROM NEW.state AND NEW.state <> 'running'
              AND NOT (OLD.state = 'running' AND NEW.token = OLD.token)))
    EXECUTE FUNCTION {ns}_job_event();

-- Counters per task for /metrics (app.stats), written by the finishing statement (finish,
-- recover): kind is succeeded or failed with label the run-time bucket's bound and total
-- the run times' sum, 'error' with label the error type of a final failure, or 'retries'.
-- Rows are only inserted, one per distinct key per batch, never updated: concurrent
-- finishes never wait for each other's row lock. sweep folds them into one row per key;
-- job_stats sums what is there. They outlive the purge of the jobs.
CREATE TABLE IF NOT EXISTS {ns}_counters (
    task  text NOT NULL,
    kind  text NOT NULL,
    label text NOT NULL,
    n     bigint NOT NULL,
    total double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {ns}_counters_key ON {ns}_counters (task, kind, label);

-- Listing (app.jobs, newest first): each filter has an index ordered by id, so a page is a
-- range scan from the cursor that stops after LIMIT rows. The state index holds only the
-- states a successful job never passes through; running and queued jobs are listed from
-- their own partial indexes (few running; queued ones sorted when few, else dense among the
-- newest), succeeded ones from the primary key.
CREATE INDEX IF NOT EXISTS {ns}_jobs_by_task ON {ns}_jobs (task, id);
CREATE INDEX IF NOT EXISTS {ns}_jobs_by_queue ON {ns}_jobs (queue, id);
CREATE INDEX IF NOT EXISTS {ns}_jobs_by_state ON {ns}_jobs (state, id)
    WHERE state IN ('scheduled', 'failed', 'cancelled', 'expired');
