"""What limits cost a claim: ``python -m bench.limits [plain|limited] [sqlite|redis]``.

``plain``: jobs without limits, taken as a worker takes them (``finish_and_claim``, batches
of 10), µs per job; run it on a checkout without limits too (``PYTHONPATH=<checkout>``) to
see what the limits code costs a queue that does not use them. ``limited``: one limit
saturated (concurrency 1, held by a running job) with a backlog of held jobs in the same
queue, and free jobs behind it: µs per job for the free ones, and for a claim that finds
nothing, at two backlog sizes; flat numbers mean no claim walks the backlog.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.redis_server import RedisServer
from conveyor.backends import Backend, open_backend
from conveyor.job import IdGenerator, JobRecord, Outcome

BATCH = 10
#: CPU time of this process: the machine is shared, and SQLite works in this process (on
#: Redis it leaves out the server's share, which the wall clock would include)
clock = time.process_time
LEASE = 300.0
_ids = IdGenerator()


def record(meta: dict[str, object] | None = None) -> JobRecord:
    now = time.time()
    return JobRecord(
        id=_ids(), task="bench.limits", payload=b"[[],{}]", created_at=now, ready_at=now,
        meta=meta or {},
    )  # fmt: skip


def server_us_per_script(backend: Backend) -> float | None:
    """On Redis: the server's own µs per script call since the last reset (INFO
    commandstats), which no load on the client's side disturbs; then resets the counts."""
    url = getattr(backend, "url", "")
    if not url.startswith("redis"):
        return None
    import redis

    client = redis.Redis.from_url(url)
    stats = client.info("commandstats")
    client.config_resetstat()
    calls = sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_eval"))
    usec = sum(v["usec"] for k, v in stats.items() if k.startswith("cmdstat_eval"))
    client.close()
    return usec / calls if calls else None


@contextmanager
def store(kind: str, namespace: str) -> Iterator[Backend]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            backend = open_backend(f"sqlite:///{folder}/bench.db?synchronous=normal")
            try:
                yield backend
            finally:
                backend.close()
    else:
        with RedisServer() as server:
            backend = open_backend(server.url, namespace=namespace)
            try:
                yield backend
            finally:
                backend.close()


def drain(backend: Backend, n: int) -> float:
    """Take ``n`` jobs as a busy worker does; µs per job."""
    done = Outcome.succeeded(b"null")
    held: list[tuple[str, int, Outcome]] = []
    taken = misses = 0
    start = clock()
    while taken < n:
        _, claims = backend.finish_and_claim(
            held, "w1", ["default"], BATCH, lease_seconds=LEASE, now=time.time()
        )
        held = []
        if not claims:  # a claim may park a batch of held jobs and find nothing yet
            misses += 1
            if misses > 100:
                break
            continue
        taken += len(claims)
        held = [(c.record.id, c.token, done) for c in claims]
    backend.finish_many(held, now=time.time())
    return (clock() - start) / max(taken, 1) * 1e6


def empty_claims(backend: Backend, n: int = 500) -> float:
    """µs per claim that finds nothing to take."""
    start = clock()
    for _ in range(n):
        assert not backend.claim("w2", ["default"], BATCH, lease_seconds=LEASE, now=time.time())
    return (clock() - start) / n * 1e6


ROUNDS = 7  # the machine is shared: each number is the best of this many rounds


def plain(kind: str, jobs: int = 3_000) -> None:
    with store(kind, "plain") as backend:
        per_job, empty, server = [], [], []
        for _ in range(ROUNDS):
            for _ in range(jobs // 1000):
                backend.enqueue([record() for _ in range(1000)])
            server_us_per_script(backend)
            per_job.append(drain(backend, jobs))
            server.append(server_us_per_script(backend) or 0.0)
            empty.append(empty_claims(backend, 300))
        print(
            f"{kind} plain: {min(per_job):.1f} µs/job (claim+finish, batches of {BATCH}), "
            f"{min(empty):.1f} µs per empty claim"
            + (f", server {min(server):.0f} µs per script" if any(server) else "")
            + f"; best of {ROUNDS}"
        )


def limited(kind: str, backlog: int, free: int = 5_000) -> None:
    from conveyor.limits import make_limit

    with store(kind, f"limited{backlog}") as backend:
        backend.set_limit(make_limit("api", concurrency=1), now=time.time())
        meta = {"limits": [["api", ""]]}
        for start in range(0, backlog, 1000):
            backend.enqueue([record(meta) for _ in range(min(1000, backlog - start))])
        backend.enqueue([record() for _ in range(2 * free)])
        first = backend.claim("w0", ["default"], 1, lease_seconds=LEASE, now=time.time())
        assert first, "the limit's first job, which holds its one slot from now on"
        # the first claims park the backlog, each held job once; later ones never see it
        parking = drain(backend, free)
        per_job = min(drain(backend, free // ROUNDS) for _ in range(ROUNDS))
        print(
            f"{kind} limited, backlog {backlog:>6}: {per_job:.1f} µs/job for free jobs, "
            f"{min(empty_claims(backend, 300) for _ in range(ROUNDS)):.1f} µs per empty claim "
            f"(first {free} jobs, parking the "
            f"backlog on the way: {parking:.1f} µs/job)"
        )


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "plain"
    kinds = argv[1:] or ["sqlite", "redis"]
    for kind in kinds:
        if mode == "plain":
            plain(kind)
        else:
            for backlog in (1_000, 20_000):
                limited(kind, backlog)


if __name__ == "__main__":
    main(sys.argv[1:])
