"""Worker memory over a million jobs: is the RSS flat?

    python -m bench.rss_flat [--jobs 1000000] [--url sqlite:///...] [--concurrency 32]

One worker process (``python -m conveyor -A bench.apps:app worker``) runs no-op jobs that this
process keeps enqueueing in batches (so the store never holds more than a few batches of
waiting jobs); the worker's RSS (VmRSS, /proc) is sampled each time another tenth of the jobs
is done. Prints the samples and writes them, with the command, to bench/MEMORY.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import conveyor
from bench.apps import NOOP, make_app

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--url", default=None, help="default: a temporary SQLite file, normal")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="conveyor-rss-")
    url = args.url or f"sqlite:///{tmp}/jobs.db?synchronous=normal"
    app = make_app(url)
    env = dict(os.environ, CONVEYOR_URL=url, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "conveyor", "-A", "bench.apps:app", "worker"]
    command += ["-c", str(args.concurrency), "--no-schedule", "--loglevel", "warning"]
    worker = subprocess.Popen(command, env=env, cwd=ROOT)
    batch, step = 20_000, args.jobs // 10
    enqueued = done = 0
    samples: list[tuple[int, float]] = []
    started = time.perf_counter()
    try:
        time.sleep(1.0)
        samples.append((0, rss_mb(worker.pid)))
        while done < args.jobs:
            counts = app.backend.queue_counts().get("default", {})
            done = counts.get(conveyor.State.SUCCEEDED, 0)
            waiting = counts.get(conveyor.State.QUEUED, 0) + counts.get(conveyor.State.RUNNING, 0)
            if enqueued < args.jobs and waiting < 2 * batch:
                n = min(batch, args.jobs - enqueued)
                app.enqueue_many(conveyor.Signature(NOOP) for _ in range(n))
                enqueued += n
            if done >= (len(samples)) * step and len(samples) <= 10:
                samples.append((done, rss_mb(worker.pid)))
                print(f"{done:>9,} jobs done: worker RSS {samples[-1][1]:.1f} MiB", flush=True)
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    first, last = samples[1][1], samples[-1][1]
    summary = (
        f"{args.jobs:,} jobs in {elapsed:.0f} s ({args.jobs / elapsed:,.0f}/s, enqueueing "
        f"included); worker RSS {samples[0][1]:.1f} MiB idle, {first:.1f} MiB after the first "
        f"tenth, {last:.1f} MiB at the end (max {max(s for _, s in samples):.1f})"
    )
    print(summary)
    shown = args.url or "a temporary SQLite file, synchronous=normal"
    lines = [
        "# Worker memory over a million jobs",
        "",
        "Written by `python -m bench.rss_flat` (from the repository root, in the project's "
        f"virtual environment), {time.strftime('%Y-%m-%d %H:%M %Z')}: one worker process, "
        f"thread pool of {args.concurrency}, store {shown}, no-op jobs enqueued in batches "
        "while it runs.",
        "",
        "| jobs done | worker RSS, MiB |",
        "|---:|---:|",
        *(f"| {n:,} | {mb:.1f} |" for n, mb in samples),
        "",
        summary + ".",
        "",
    ]
    (ROOT / "bench" / "MEMORY.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
