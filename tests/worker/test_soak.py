"""A bounded soak: three worker processes with two-second leases work through a few thousand
``fault.span`` jobs while the test kills (SIGKILL), freezes (SIGSTOP, then SIGCONT) and stops
(SIGTERM) workers at random, and on Redis (append-only file, fsync always) and PostgreSQL
kills the server and starts it again, or freezes it whole for up to two leases (a stall).
Judged from the span log and the store: nothing lost, no stale outcome, no two runs of one
job overlapping (outside a frozen worker's first moments after SIGCONT), and the jobs of a
killed worker back in the queue within the lease plus two seconds.

``CONVEYOR_SOAK_SECONDS`` sets how long the chaos lasts (default 60 per backend);
``CONVEYOR_SOAK_SEED`` replays a run (the seed is printed).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from conveyor.job import State
from tests.servers import PostgresServer, RedisServer
from tests.worker.procs import WorkerProcess, client_for, wait_for
from tests.worker.spans import Freeze, overlaps, read_runs

pytestmark = pytest.mark.slow

LEASE = 2.0
WORKERS = 3
SOAK_SECONDS = float(os.environ.get("CONVEYOR_SOAK_SECONDS", "60"))
#: how long a killed worker's jobs may stay running in the store
RECOVERY_BOUND = LEASE + 2.0
#: The chaos hits a worker every two seconds or so, and each kill or freeze past a lease
#: is a lost worker, which counts a crash against every job it held: at the default of 3 a
#: long job that is unlucky three times would end failed as a suspected poison job. The soak
#: is about losing nothing and never running twice at once, so it allows more.
MAX_CRASHES = {"FAULT_MAX_CRASHES": "100"}


Server = RedisServer | PostgresServer


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> Iterator[tuple[str, str, Server | None]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/jobs.db", "conveyor", None
    else:
        server: Server = request.getfixturevalue(f"fresh_{request.param}_server")
        yield server.url, namespace, server


class Chaos:
    """The workers, what was done to them and when, and how fast the store recovered."""

    def __init__(self, url: str, namespace: str, rng: random.Random) -> None:
        self.url, self.namespace, self.rng = url, namespace, rng
        self.workers = [self.spawn() for _ in range(WORKERS)]
        self.retired: list[WorkerProcess] = []
        self.kills: dict[int, float] = {}
        self.freezes: list[Freeze] = []
        self.recoveries: list[float] = []
        self.actions: list[str] = []

    def spawn(self) -> WorkerProcess:
        return WorkerProcess(
            self.url, "4", str(LEASE), "5", namespace=self.namespace, env=MAX_CRASHES
        )

    def replace(self, worker: WorkerProcess) -> None:
        self.workers[self.workers.index(worker)] = self.spawn()
        self.retired.append(worker)

    def kill(self, app: conveyor.App, worker: WorkerProcess) -> None:
        held = running_on(app, worker.pid)
        self.kills[worker.pid] = time.time()
        worker.signal(signal.SIGKILL)
        worker.wait(30)
        killed_at = time.monotonic()
        self.replace(worker)
        waiting = dict(held)
        while waiting and time.monotonic() - killed_at < 3 * RECOVERY_BOUND:
            for job_id, token in list(waiting.items()):
                record = app.backend.get(job_id)
                if record is None or record.state is not State.RUNNING or record.token != token:
                    self.recoveries.append(time.monotonic() - killed_at)
                    del waiting[job_id]
            time.sleep(0.05)
        self.recoveries += [3 * RECOVERY_BOUND] * len(waiting)

    def freeze(self, worker: WorkerProcess) -> None:
        freeze = Freeze(worker.pid, worker.freeze())
        self.freezes.append(freeze)
        try:
            time.sleep(self.rng.uniform(0.5, 2 * LEASE))
        finally:
            freeze.resumed = time.time()
            worker.signal(signal.SIGCONT)

    def terminate(self, worker: WorkerProcess) -> None:
        worker.signal(signal.SIGTERM)
        worker.wait(60)
        self.kills[worker.pid] = time.time()  # nothing of it runs past its exit
        self.replace(worker)

    def stop_all(self, logs: Path) -> None:
        for worker in self.workers + self.retired:
            worker.signal(signal.SIGCONT)
            worker.stop()
            (logs / f"worker-{worker.pid}.log").write_text(worker.stderr)


def stall(server: Server, seconds: float) -> None:
    """The whole server frozen (on PostgreSQL the postmaster and every backend)."""
    server.signal(signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        server.signal(signal.SIGCONT)


def running_on(app: conveyor.App, pid: int) -> dict[str, int]:
    """The jobs the store has running on the worker process ``pid``, with their tokens."""
    return {
        r.id: r.token
        for r in app.backend.list_jobs(state=State.RUNNING, limit=1000)
        if r.worker is not None and f":{pid}:" in r.worker
    }


@pytest.mark.timeout(SOAK_SECONDS + 420)
def test_a_soak_of_kills_freezes_and_restarts_loses_nothing_and_never_runs_a_job_twice_at_once(
    store: tuple[str, str, Server | None], tmp_path: Path
) -> None:
    url, namespace, server = store
    seed = int(os.environ.get("CONVEYOR_SOAK_SEED", str(random.randrange(2**32))))
    print(f"soak seed {seed}")
    rng = random.Random(seed)
    app = client_for(url, namespace)
    log = tmp_path / "spans.log"
    jobs: list[conveyor.Job] = []
    producing = threading.Event()
    producing.set()

    durations = random.Random(seed + 1)

    def produce() -> None:
        rng = durations
        while producing.is_set():
            batch = [
                conveyor.Signature("fault.span", (str(log), seconds))
                for seconds in (
                    rng.uniform(1.0, 3.0) if rng.random() < 0.03 else rng.uniform(0, 0.1)
                    for _ in range(50)
                )
            ]
            # while the server restarts, a batch may be refused: it was never acknowledged
            with contextlib.suppress(conveyor.BackendUnavailable):
                jobs.extend(app.enqueue_many(batch))
            time.sleep(1.0)

    producer = threading.Thread(target=produce)
    chaos = Chaos(url, namespace, rng)
    try:
        producer.start()
        ends = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < ends:
            time.sleep(rng.uniform(1.0, 3.0))
            worker = rng.choice(chaos.workers)
            action = rng.choice(["kill", "freeze", "terminate", "server", "stall"])
            if action in ("server", "stall") and server is None:
                action = "freeze"
            chaos.actions.append(action)
            if action == "kill":
                chaos.kill(app, worker)
            elif action == "freeze":
                chaos.freeze(worker)
            elif action == "terminate":
                chaos.terminate(worker)
            elif action == "stall":
                assert server is not None
                stall(server, rng.uniform(0.5, 2 * LEASE))
            else:
                assert server is not None
                server.kill()
                server.start()
        producing.clear()
        producer.join(60)
        wait_for(lambda: all(j.state.is_final for j in jobs), timeout=180, what="the last jobs")
    finally:
        producing.clear()
        chaos.stop_all(tmp_path)
    print(f"{len(jobs)} jobs; chaos: {chaos.actions}")
    records = {j.id: app.backend.get(j.id) for j in jobs}
    results = {i: app.decode_result(r) for i, r in records.items() if r is not None and r.result}
    app_runs = read_runs(log)
    app.close()

    lost = [job_id for job_id, r in records.items() if r is None or r.state is not State.SUCCEEDED]
    assert not lost, f"{len(lost)} jobs did not succeed: {[records[i] for i in lost[:3]]}"
    ended = {(r.job, r.token) for r in app_runs if r.how == "end"}
    stale = [
        (job_id, r.token)
        for job_id, r in records.items()
        if r is not None and ((job_id, r.token) not in ended or results.get(job_id) != r.token)
    ]
    assert not stale, f"outcomes not written by the claim that ran to its end: {stale[:5]}"
    assert not overlaps(app_runs, freezes=chaos.freezes, kills=chaos.kills, grace=0.5)
    slow = [t for t in chaos.recoveries if t > RECOVERY_BOUND]
    assert not slow, f"recoveries slower than {RECOVERY_BOUND} s: {slow}"
