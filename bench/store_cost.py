"""``python -m bench.store_cost``: CPU instructions per job of the SQLite store's busy path
alone, under ``valgrind --tool=callgrind``: one thread calling ``finish_and_claim`` with
batches of a fixed size (the worker's loop while a backlog lasts), no pool, no other thread.

``bench.like --instructions`` counts the whole worker, whose batch sizes follow how valgrind
schedules its threads: the same code gives counts some 10% apart from run to run. Here the
batch size is fixed, so the count repeats to a few hundred instructions, and two batch sizes
split it into a cost per transaction and a cost per job: what a change to the store's SQL or
its Python side saves. ``--keep DIR`` keeps callgrind's files
(``callgrind_annotate --inclusive=yes``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import callgrind
from bench.apps import NOOP, make_app
from conveyor.job import Outcome, State

QUEUE = "default"


def child(batch: int, jobs: int) -> int:
    """In the measured process: a backlog, then ``jobs`` jobs finished and claimed in batches
    of ``batch`` between two handshakes."""
    with tempfile.TemporaryDirectory(prefix="conveyor-store-cost-") as workdir:
        app = make_app(f"sqlite:///{workdir}/jobs.db?synchronous=normal", "bench")
        noop = app.registry.get(NOOP)
        app.enqueue_many((noop.s() for _ in range(jobs + 2 * batch)), batch_size=500)
        backend = app.backend
        claims = backend.claim("w", [QUEUE], batch, lease_seconds=30.0, now=time.time())
        print("ready", flush=True)
        sys.stdin.readline()
        done = accepted = 0
        while done < jobs:
            items = [(c.record.id, c.token, Outcome(State.SUCCEEDED)) for c in claims]
            done += len(items)
            landed, claims = backend.finish_and_claim(
                items, "w", [QUEUE], batch, lease_seconds=30.0, now=time.time()
            )
            accepted += sum(landed)
        if accepted != done:  # a refused finish costs less: the count would flatter the store
            raise RuntimeError(f"{done - accepted} of {done} finishes were refused")
        print("done", flush=True)
        sys.stdin.readline()
        app.close()
    return 0


def count(batch: int, jobs: int, workdir: Path) -> float:
    """Instructions per job at this batch size."""
    out = workdir / f"store-{batch}-{os.urandom(3).hex()}.out"
    command = [*callgrind.prefix(out), sys.executable, "-m", "bench.store_cost", "--child",
               str(batch), str(jobs)]  # fmt: skip
    callgrind.handshake(command, f"batch {batch}", wait=600)
    return callgrind.totals(out) / jobs


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(int(argv[1]), int(argv[2]))
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2048, help="jobs counted per batch size")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (2, 8, 32)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep callgrind's files here")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is not installed")
    batches = sorted(set(args.batch or [2, 8, 32]))
    print(f"SQLite store, synchronous=normal, finish_and_claim, {args.jobs:,} jobs", flush=True)
    per_job: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="conveyor-store-cost-") as workdir:
        where = Path(workdir) if args.keep is None else args.keep
        where.mkdir(parents=True, exist_ok=True)
        for batch in batches:
            per_job[batch] = count(batch, args.jobs, where)
            print(f"batch {batch:4}: {per_job[batch]:10,.0f} instructions per job", flush=True)
    if len(batches) > 1:
        # cost per job = fixed / batch + marginal: the two ends of the range fit both
        small, large = batches[0], batches[-1]
        fixed = (per_job[small] - per_job[large]) / (1 / small - 1 / large)
        print(f"per transaction {fixed:,.0f}; per job {per_job[large] - fixed / large:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
