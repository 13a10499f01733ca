"""A network partition between one worker and Redis: the worker reaches the server through a
TCP proxy (tests/proxy.py) that the test turns into a black hole mid-job, or from a network
namespace of the test's own whose link it takes down (tests/netns.py; skipped where
``ip netns`` is not permitted). The cut-off worker stops its runs before their leases run
out, another worker takes the jobs over, no run of a job overlaps another, and once the link
is back the cut-off worker serves again without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import conveyor
from conveyor.job import State
from tests.netns import create_or_skip
from tests.proxy import BlackHoleProxy
from tests.servers import RedisServer, redis_binary
from tests.worker.procs import WorkerProcess, client_for, wait_for
from tests.worker.spans import overlaps, read_runs
from tests.worker.test_leases import LEASE, spans

pytestmark = pytest.mark.slow


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[BlackHoleProxy]:
    p = BlackHoleProxy(redis_server.port)
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


@pytest.fixture(params=["proxy", "netns"])
def partition(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Partition]:
    if request.param == "proxy":
        server: RedisServer = request.getfixturevalue("redis_server")
        proxy = request.getfixturevalue("proxy")
        yield Partition(server.url, proxy.url(), proxy.cut, proxy.heal)
        return
    link = create_or_skip()
    own = RedisServer(
        redis_binary(),
        tmp_path,
        args=("--bind", "127.0.0.1", link.host_ip, "--protected-mode", "no"),
    )
    try:
        own.start()
        far = f"redis://{link.host_ip}:{own.port}/0"
        yield Partition(own.url, far, link.cut, link.heal, link.prefix)
    finally:
        own.stop()
        link.close()


def test_a_worker_cut_off_from_redis_stops_its_jobs_in_time_and_serves_again_when_healed(
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
        assert all(j.state is State.SUCCEEDED for j in jobs)
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


def test_no_call_to_a_cut_off_redis_hangs_past_the_bound_a_worker_sets(
    proxy: BlackHoleProxy, namespace: str
) -> None:
    from conveyor.backends import open_backend

    backend = open_backend(proxy.url(), namespace=namespace)
    try:
        backend.set_call_timeout(LEASE / 3)
        assert backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=time.time()) == []
        proxy.cut()
        for call in (
            lambda: backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=time.time()),
            lambda: backend.wait_for_jobs(["default"], 5.0),
            lambda: backend.recover(now=time.time(), max_crashes=3),
        ):
            began = time.monotonic()
            with pytest.raises(conveyor.BackendUnavailable):
                call()
            assert time.monotonic() - began < LEASE
        proxy.heal()
        assert backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=time.time()) == []
    finally:
        proxy.heal()
        backend.close()
