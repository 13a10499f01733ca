"""Health checks and clean-ups on three app instances at once: every instance runs the
scheduler, and each due time still runs once; the heavy job goes to its own queue, served by
a process pool of its own, so it never holds up the light ones.

    python -m examples.periodic --seconds 20    # 3 instances + the heavy pool, then a report

or by hand, as a deployment runs it (each line a process, on any machines):

    conveyor -A examples.periodic:app worker -Q default -c 2               # run it 3 times
    conveyor -A examples.periodic:app worker -Q heavy --pool process -c 2 --no-schedule

The store is CONVEYOR_URL, else ./periodic.db; reports go to PERIODIC_DIR (else ./reports).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import conveyor

app = conveyor.App(os.environ.get("CONVEYOR_URL") or "sqlite:///periodic.db")
REPORTS = Path(os.environ.get("PERIODIC_DIR", "reports"))


def _due() -> float:
    """The due time this run covers (``current_job().due``), as POSIX seconds."""
    job = conveyor.current_job()
    return job.due.timestamp() if job is not None and job.due is not None else time.time()


@app.periodic(every=2, name="periodic.health_check", overlap=False)
def health_check() -> dict[str, Any]:
    """Is the store answering, is there disk left?"""
    disk = shutil.disk_usage(REPORTS if REPORTS.exists() else ".")
    return {
        "due": _due(),
        "pid": os.getpid(),
        "store": app.backend.ping(),
        "disk_free_percent": round(100 * disk.free / disk.total, 1),
    }


@app.periodic(every=3, args=(6,), name="periodic.cleanup")
def cleanup(max_age_seconds: float) -> dict[str, Any]:
    """Delete reports older than ``max_age_seconds``."""
    removed = 0
    for report in REPORTS.glob("*.txt"):
        if time.time() - report.stat().st_mtime > max_age_seconds:
            report.unlink(missing_ok=True)
            removed += 1
    return {"due": _due(), "pid": os.getpid(), "removed": removed}


@app.periodic(every=4, name="periodic.rebuild_index", queue="heavy", timeout=60)
def rebuild_index() -> dict[str, Any]:
    """CPU-bound: runs in a child process of the heavy pool, never on the light instances."""
    due = _due()
    total = sum(i * i for i in range(2_000_000))
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"index-{int(due)}.txt").write_text(str(total))
    return {"due": due, "pid": os.getpid()}


def report() -> tuple[str, bool]:
    """Runs per task, due times, and the processes that ran them; False if a due time ran
    twice."""
    lines, once = [], True
    for name in ("periodic.health_check", "periodic.cleanup", "periodic.rebuild_index"):
        jobs = app.jobs(task=name, limit=1000).items
        dues = Counter(job.meta.get("due") for job in jobs)
        states = Counter(str(job.state) for job in jobs)
        pids: dict[str, set[int]] = defaultdict(set)
        for job in jobs:
            if job.state is conveyor.State.SUCCEEDED:
                pids[job.queue].add(job.result["pid"])
        twice = [due for due, n in dues.items() if n > 1]
        once = once and not twice
        lines.append(
            f"{name}: {len(jobs)} jobs, {len(dues)} due times, run twice: {len(twice)}, "
            f"states {dict(states)}, processes {sorted(len(p) for p in pids.values())}"
        )
    return "\n".join(lines), once


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "conveyor", "-A", "examples.periodic:app", "worker"]
    commands = [[*cli, "-Q", "default", "-c", "2"]] * 3
    commands.append([*cli, "-Q", "heavy", "--pool", "process", "-c", "2", "--no-schedule"])
    procs = [subprocess.Popen(c, stderr=subprocess.DEVNULL) for c in commands]
    print(f"3 instances and a heavy pool running for {args.seconds:g} s ...", flush=True)
    try:
        time.sleep(args.seconds)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in procs]
    text, once = report()
    print(text)
    print("each due time ran once" if once else "A DUE TIME RAN TWICE")
    return 0 if once and codes == [0, 0, 0, 0] else 1


if __name__ == "__main__":
    sys.exit(main())
