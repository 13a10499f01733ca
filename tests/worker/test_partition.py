"""A network partition between one worker and its store (Redis or PostgreSQL): the worker
reaches the server through a TCP proxy (tests/proxy.py) that the test turns into a black hole
mid-job, or from a network namespace of the test's own whose link it takes down
(tests/netns.py; skipped where ``ip netns`` is not permitted). The cut-off worker stops its
runs before their leases run out, another worker takes the jobs over, no run of a job overlaps
another, and once the link is back the cut-off worker serves again without a restart."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

import conveyor
from conveyor.backends import Backend, open_backend
from conveyor.backends.postgres import PostgresBackend
from conveyor.job import Claim, State
from tests.backends.helpers import make_record, make_worker
from tests.netns import NetnsLink, create_or_skip
from tests.proxy import BlackHoleProxy
from tests.servers import PostgresServer, RedisServer, postgres_bindir, redis_binary
from tests.worker.procs import WorkerProcess, client_for, wait_for
from tests.worker.spans import overlaps, read_runs
from tests.worker.test_leases import LEASE, spans

pytestmark = pytest.mark.slow

Server = RedisServer | PostgresServer


def through(proxy: BlackHoleProxy, server: Server) -> str:
    """The server's URL, with the proxy's port in place of the server's."""
    return server.url.replace(f":{server.port}/", f":{proxy.port}/")


@pytest.fixture
def proxy(server: Server) -> Iterator[BlackHoleProxy]:
    p = BlackHoleProxy(server.port)
    try:
        yield p
    finally:
        p.close()


@dataclass
class Partition:
    """How the test cuts one worker off from the server, and what that worker runs in."""

    server_url: str  # the other workers' and the test's way to the server
    cut_off_url: str  # the cut-off worker's
    cut: Callable[[], None]
    heal: Callable[[], None]
    prefix: Sequence[str] = ()  # what the cut-off worker's command runs under


def server_across(link: NetnsLink, kind: Server, directory: Path) -> Server:
    """A server of ``kind``'s sort that also listens on the host's end of ``link``."""
    if isinstance(kind, RedisServer):
        args = ("--bind", "127.0.0.1", link.host_ip, "--protected-mode", "no")
        return RedisServer(redis_binary(), directory, args=args)
    return PostgresServer(postgres_bindir(), also_listen=(link.host_ip, link.ns_ip))


@pytest.fixture(params=["proxy", "netns"])
def partition(
    request: pytest.FixtureRequest, server: Server, tmp_path: Path
) -> Iterator[Partition]:
    if request.param == "proxy":
        proxy = request.getfixturevalue("proxy")
        yield Partition(server.url, through(proxy, server), proxy.cut, proxy.heal)
        return
    link = create_or_skip()
    own: Server | None = None
    try:
        own = server_across(link, server, tmp_path)
        own.start()
        far = own.url.replace("127.0.0.1", link.host_ip)
        yield Partition(own.url, far, link.cut, link.heal, link.prefix)
    finally:
        if isinstance(own, PostgresServer):
            own.remove()
        elif own is not None:
            own.stop()
        link.close()


def test_a_worker_cut_off_from_its_store_stops_its_jobs_in_time_and_serves_again_when_healed(
    partition: Partition, tmp_path: Path, namespace: str
) -> None:
    url = partition.server_url
    app = client_for(url, namespace)
    log = tmp_path / "spans.log"
    cut_off = WorkerProcess(
        partition.cut_off_url, "2", str(LEASE), "5", namespace=namespace, prefix=partition.prefix
    )
    other: WorkerProcess | None = None
    try:
        jobs = spans(app, log, 2, 8.0)
        wait_for(lambda: len(read_runs(log)) == 2, what="the cut-off worker's runs")
        assert {run.pid for run in read_runs(log)} == {cut_off.pid}
        other = WorkerProcess(url, "2", str(LEASE), "5", namespace=namespace)
        cut_at = time.time()
        partition.cut()
        wait_for(lambda: all(j.state.is_final for j in jobs), timeout=90, what="the takeover")
        runs = read_runs(log)
        stopped = [r for r in runs if r.pid == cut_off.pid]
        assert [r.how for r in stopped] == ["stop", "stop"]
        # stopped at the worker's local deadline, well before the leases could run out
        assert all(r.end - cut_at < LEASE for r in stopped), stopped
        assert all(j.state is State.SUCCEEDED for j in jobs), [
            (r.state, r.crashes, r.error) for j in jobs if (r := app.backend.get(j.id))
        ]
        assert {r.pid for r in runs if r.how == "end"} == {other.pid}

        partition.heal()
        other.stop()
        later = spans(app, log, 4, 0.1)
        wait_for(lambda: all(j.state.is_final for j in later), timeout=60, what="serving again")
        assert all(j.state is State.SUCCEEDED for j in later)
        ids = {j.id for j in later}
        assert {r.pid for r in read_runs(log) if r.job in ids} == {cut_off.pid}
    finally:
        partition.heal()
        cut_off.stop()
        if other is not None:
            other.stop()
        app.close()
    assert not overlaps(read_runs(log))
    assert "lease not renewed in time" in cut_off.stderr


def calls_a_worker_makes(backend: Backend) -> list[Callable[[], object]]:
    """One of each kind of call a worker makes to its store."""
    worker = make_worker("w")
    calls: list[Callable[[], object]] = [
        lambda: backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=time.time()),
        lambda: backend.finish_and_claim(
            [], "w", ["default"], 1, lease_seconds=LEASE, now=time.time()
        ),
        lambda: backend.heartbeat(worker, [("x", 1)], lease_seconds=LEASE, now=time.time()),
        lambda: backend.recover(now=time.time(), max_crashes=3),
        lambda: backend.enqueue([make_record(at=time.time())]),
    ]
    if backend.scheme != "postgresql":
        # Redis blocks on the server for new jobs; PostgreSQL waits on its listener's
        # notifications, in this process, for the timeout it is given
        calls.append(lambda: backend.wait_for_jobs(["default"], 5.0))
    return calls


def assert_no_call_hangs_past_the_bound(backend: Backend, cut: Callable[[], None]) -> None:
    """Every call a worker makes fails within its lease once ``cut`` stops the store from
    answering, the bound a worker sets being a third of its lease."""
    backend.set_call_timeout(LEASE / 3)

    def claim(_: object = None) -> list[Claim]:
        return backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=time.time())

    with ThreadPoolExecutor(4) as threads:  # several idle connections in the pool
        assert list(threads.map(claim, range(8))) == [[]] * 8
    cut()
    for call in calls_a_worker_makes(backend):
        began = time.monotonic()
        with pytest.raises(conveyor.BackendUnavailable):
            call()
        assert time.monotonic() - began < LEASE


def assert_serves_again(backend: Backend) -> None:
    """Once the store answers again, so does the backend, without being opened anew."""
    [record] = backend.enqueue([make_record(at=time.time())])
    # Not a claim: statements sent while cut off may still arrive and run (a claim among
    # them would take the job), as bytes a real network held back would.
    assert backend.get(record.id) is not None


def test_no_call_to_a_cut_off_store_hangs_past_the_bound_a_worker_sets(
    server: Server, proxy: BlackHoleProxy, namespace: str
) -> None:
    backend = open_backend(through(proxy, server), namespace=namespace)
    try:
        assert_no_call_hangs_past_the_bound(backend, proxy.cut)
        proxy.heal()
        assert_serves_again(backend)
    finally:
        proxy.heal()
        backend.close()


def test_no_call_to_a_frozen_server_hangs_past_the_bound_a_worker_sets(
    fresh_server: Server, namespace: str
) -> None:
    backend = open_backend(fresh_server.url, namespace=namespace)
    try:
        assert_no_call_hangs_past_the_bound(backend, lambda: fresh_server.signal(signal.SIGSTOP))
        fresh_server.signal(signal.SIGCONT)
        assert_serves_again(backend)
    finally:
        fresh_server.signal(signal.SIGCONT)
        backend.close()


def test_a_postgres_worker_stopped_inside_a_transaction_holds_no_lock_past_its_bound(
    postgres_server: PostgresServer, namespace: str
) -> None:
    """A worker frozen (or cut off) between two statements of a transaction, after taking
    the store-wide heartbeat record's lock as every heartbeat does: the server ends its
    session, so the other workers' heartbeats are not held up behind it."""
    bound = 3.0
    frozen = open_backend(postgres_server.url, namespace=namespace)
    other = open_backend(postgres_server.url, namespace=namespace)
    assert isinstance(frozen, PostgresBackend)
    frozen.set_call_timeout(bound)
    other.set_call_timeout(3 * bound)  # it may wait for the lock longer than the frozen one
    try:
        with frozen._db.pool().connection() as conn:
            conn.execute("BEGIN")
            conn.execute(f"SELECT 1 FROM {namespace}_beats FOR UPDATE")
            began = time.monotonic()
            other.heartbeat(make_worker(), [], lease_seconds=3 * bound, now=time.time())
            assert time.monotonic() - began < 2 * bound  # not 3 * bound, then unavailable
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                conn.execute("SELECT 1")  # the server ended the session meanwhile
    finally:
        frozen.close()
        other.close()
