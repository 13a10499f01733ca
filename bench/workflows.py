"""Large fan-outs: what a chord of N members costs on SQLite and Redis.

``python -m bench.workflows [N ...]`` (default 1000 and 10000). For each store it measures,
in this process and without workers, so only the store's own cost is counted:

- enqueue: ``chord([...N members], callback).delay()``, one atomic store call;
- finish: every member claimed and finished in batches of 100 (``finish_many``), the last one
  queueing the callback; beside it the same N plain jobs (no workflow) claimed and finished
  the same way, so the ratio shows what a workflow adds per member finish.

Members/s are printed; a per-member cost that stays flat from 1000 to 10000 members is the
O(1)-per-finish claim. Not part of ``make bench``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable

import conveyor
from bench.redis_server import RedisServer
from conveyor.job import Outcome

BATCH = 100


def drain(app: conveyor.App, n: int) -> float:
    """Claim and finish ``n`` jobs in batches; seconds taken."""
    backend = app.backend
    ok = Outcome.succeeded(b"1")
    done = 0
    start = time.perf_counter()
    while done < n:
        claims = backend.claim("bench", ["default"], BATCH, lease_seconds=60.0, now=time.time())
        if not claims:
            raise RuntimeError(f"only {done} of {n} jobs were ready")
        backend.finish_many([(c.record.id, c.token, ok) for c in claims], now=time.time())
        done += len(claims)
    return time.perf_counter() - start


def measure(make_app: Callable[[str], conveyor.App], n: int) -> dict[str, float]:
    app = make_app(f"wf{n}")

    @app.task(name="bench.member")
    def member(i: int) -> int:
        return i

    @app.task(name="bench.total")
    def total(values: list[int]) -> int:
        return sum(values)

    sigs = [member.s(i) for i in range(n)]
    start = time.perf_counter()
    callback = conveyor.chord(sigs, total.s()).delay()
    enqueue = time.perf_counter() - start
    finish = drain(app, n)
    [claim] = app.backend.claim("bench", ["default"], 5, lease_seconds=60.0, now=time.time())
    assert claim.record.id == callback.id, "the callback was not queued"

    plain = make_app(f"plain{n}")
    plain.registry = app.registry
    start = time.perf_counter()
    plain.enqueue_many(sigs)
    plain_enqueue = time.perf_counter() - start
    plain_finish = drain(plain, n)
    app.close()
    plain.close()
    return {
        "enqueue": n / enqueue,
        "finish": n / finish,
        "plain_enqueue": n / plain_enqueue,
        "plain_finish": n / plain_finish,
    }


def report(store: str, make_app: Callable[[str], conveyor.App], sizes: list[int]) -> None:
    for n in sizes:
        r = measure(make_app, n)
        print(
            f"{store:7} chord of {n:6}: enqueue {r['enqueue']:9.0f} members/s "
            f"(plain enqueue_many {r['plain_enqueue']:9.0f} jobs/s); member finish "
            f"{r['finish']:8.0f}/s (plain {r['plain_finish']:8.0f}/s, ratio "
            f"{r['plain_finish'] / r['finish']:.2f})",
            flush=True,
        )


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1000, 10000]
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-wf-") as tmp:
        report("sqlite", lambda ns: conveyor.App(f"sqlite:///{tmp}/jobs.db", namespace=ns), sizes)
    with RedisServer() as server:
        report("redis", lambda ns: conveyor.App(server.url, namespace=ns), sizes)


if __name__ == "__main__":
    main(sys.argv[1:])
