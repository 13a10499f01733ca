"""Leases that hold when the store stalls or a worker freezes (issue 9), with real processes
and real servers: a claim that waited for the store gets a lease that starts when it was
granted; a stall for everyone counts no crash and fails no job; a worker frozen past its lease
that claims the same job again keeps the two claims apart. Overlaps are judged from the
``fault.span`` log (tests/worker/spans.py)."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import conveyor
from conveyor.backends import open_backend
from conveyor.job import Claim, State
from conveyor.task import CallOptions
from tests.backends.helpers import make_record
from tests.servers import PostgresServer, RedisServer
from tests.worker.procs import WorkerProcess, client_for, wait_for
from tests.worker.spans import Freeze, overlaps, read_runs

pytestmark = pytest.mark.slow

LEASE = 2.0


def spans(app: conveyor.App, log: Path, n: int, seconds: float) -> list[conveyor.Job]:
    return app.enqueue_many(conveyor.Signature("fault.span", (str(log), seconds)) for _ in range(n))


def assert_all_succeeded_once_without_crashes(app: conveyor.App, jobs: list[conveyor.Job]) -> None:
    records = [app.backend.get(job.id) for job in jobs]
    assert all(r is not None and r.state is State.SUCCEEDED for r in records), [
        (r.id, r.state, r.error)
        for r in records
        if r is not None and r.state is not State.SUCCEEDED
    ]
    crashed = [(r.id, r.crashes) for r in records if r is not None and r.crashes]
    assert not crashed, f"a stall counted as crashes: {crashed}"


# -- a claim that waited for the store ---------------------------------------------------------


def claim_in_thread(backend: conveyor.backends.Backend) -> tuple[threading.Thread, list[Claim]]:
    claims: list[Claim] = []

    def claim() -> None:
        claims.extend(backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=time.time()))

    thread = threading.Thread(target=claim)
    thread.start()
    return thread, claims


def test_a_claim_that_waited_for_the_sqlite_write_lock_is_stamped_when_granted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    backend = open_backend(f"sqlite:///{path}")
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        backend.enqueue([make_record(at=time.time())])
        blocker.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        thread, claims = claim_in_thread(backend)
        time.sleep(LEASE + 1)
        released = time.time()
        blocker.execute("COMMIT")
        thread.join(30)
        [claim] = claims
        record = backend.get(claim.record.id)
        assert record is not None and record.started_at is not None
        assert record.started_at >= released
        assert record.lease_expires_at is not None
        assert record.lease_expires_at >= released + LEASE
        assert claim.record.lease_expires_at == record.lease_expires_at
    finally:
        blocker.close()
        backend.close()


def test_a_claim_sent_to_a_frozen_server_is_stamped_when_it_runs(
    fresh_server: RedisServer | PostgresServer, namespace: str
) -> None:
    backend = open_backend(fresh_server.url, namespace=namespace)
    try:
        backend.enqueue([make_record(at=time.time())])
        fresh_server.signal(signal.SIGSTOP)  # PostgreSQL: the postmaster and its backends
        try:
            thread, claims = claim_in_thread(backend)
            time.sleep(LEASE + 1)
            resumed = time.time()
        finally:
            fresh_server.signal(signal.SIGCONT)
        thread.join(30)
        [claim] = claims
        record = backend.get(claim.record.id)
        assert record is not None and record.lease_expires_at is not None
        assert record.lease_expires_at >= resumed + LEASE - 0.05  # the server's clock
        assert claim.record.started_at == record.started_at
    finally:
        backend.close()


# -- a store that stalls for everyone ----------------------------------------------------------


def ride_out(
    url: str, namespace: str, log: Path, stall: Callable[[], None], *, workers: int, jobs: int
) -> None:
    """Workers at work on span jobs; ``stall`` stalls the store for all of them; then every
    job must succeed, once, with no crash counted and no two runs of a job overlapping."""
    app = client_for(url, namespace)
    procs = [WorkerProcess(url, "4", str(LEASE), namespace=namespace) for _ in range(workers)]
    try:
        enqueued = spans(app, log, jobs, 0.2)
        wait_for(lambda: len(read_runs(log)) >= jobs // 6, what="work under way")
        stall()
        wait_for(lambda: all(j.state.is_final for j in enqueued), timeout=120, what="all jobs")
        assert_all_succeeded_once_without_crashes(app, enqueued)
    finally:
        for proc in procs:
            proc.stop()
        app.close()
    assert not overlaps(read_runs(log))


def test_workers_ride_out_a_sqlite_write_lock_held_past_their_leases(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    def hold_the_write_lock() -> None:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            time.sleep(LEASE * 2)  # every lease of a running job runs out meanwhile
            blocker.execute("COMMIT")
        finally:
            blocker.close()

    ride_out(f"sqlite:///{path}", "conveyor", tmp_path / "spans.log", hold_the_write_lock,
             workers=2, jobs=60)  # fmt: skip


def test_workers_ride_out_a_frozen_server(
    fresh_server: RedisServer | PostgresServer, tmp_path: Path, namespace: str
) -> None:
    def freeze_the_server() -> None:
        fresh_server.signal(signal.SIGSTOP)
        try:
            # workers finishing and claiming wait on it meanwhile, and give up their calls
            # after a third of their lease
            time.sleep(LEASE * 1.5)
        finally:
            fresh_server.signal(signal.SIGCONT)

    ride_out(fresh_server.url, namespace, tmp_path / "spans.log", freeze_the_server,
             workers=3, jobs=150)  # fmt: skip


# -- a worker frozen past its lease ------------------------------------------------------------


def test_a_worker_frozen_past_its_lease_stops_its_old_run_and_completes_the_new_claim(
    client: conveyor.App, durable: tuple[str, str], tmp_path: Path
) -> None:
    url, ns = durable
    app = client
    log = tmp_path / "spans.log"
    worker = WorkerProcess(url, "2", str(LEASE), namespace=ns)
    freeze: Freeze | None = None
    try:
        job = app.submit("fault.span", (str(log), 6.0), {}, CallOptions())
        wait_for(lambda: bool(read_runs(log)), what="attempt 1")
        freeze = Freeze(worker.pid, worker.freeze())
        # Its lease runs out in the store, which puts the job back (as another worker's
        # housekeeping would); then the same worker wakes up and claims it again.
        time.sleep(LEASE + 0.5)
        wait_for(
            lambda: bool(app.backend.recover(now=time.time(), max_crashes=3)),
            what="the lease to run out in the store",
        )
        freeze.resumed = time.time()
        worker.signal(signal.SIGCONT)
        job.result(timeout=60)
    finally:
        worker.signal(signal.SIGCONT)
        worker.stop()
    runs = {run.token: run for run in read_runs(log)}
    record = app.backend.get(job.id)
    assert record is not None and record.state is State.SUCCEEDED
    old, new = sorted(runs.values(), key=lambda r: r.start)
    assert (old.how, new.how) == ("stop", "end")
    assert freeze is not None and old.end - freeze.resumed < 1.0, "the zombie run went on"
    assert new.token == record.token
    assert app.decode_result(record) == new.token  # the new claim's outcome, not a stale one
    assert not overlaps(list(runs.values()), freezes=[freeze])
