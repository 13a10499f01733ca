"""Reading the ``fault.span`` log (tests/worker/fault_app.py): the runs of each job as time
intervals, and the judgement the lease tests make from them: did two runs of one job ever
execute at the same time?

A line is ``<start|end|stop> <job id> <token> <time.time()> <pid>``. A run is one claim's
execution (job id and token). A run with no closing line ended when its process died: the
test says when (``kills``), else it counts as running for ever. A frozen process executes
nothing while frozen: its ``freezes`` are cut out of its runs, and so are the first ``grace``
seconds after it resumes (the moment a thawed worker needs to see that its lease is gone).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    job: str
    token: int
    pid: int
    start: float
    end: float = math.inf
    how: str = ""  # "end" (ran to its end), "stop" (interrupted), "" (no closing line)


@dataclass
class Freeze:
    pid: int
    stopped: float
    resumed: float = math.inf


def read_runs(path: Path) -> list[Run]:
    runs: dict[tuple[str, int], Run] = {}
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue  # a line cut short by a kill -9 in the middle of its write
        event, job, token, at, pid = parts
        key = (job, int(token))
        if event == "start":
            runs[key] = Run(job, int(token), int(pid), float(at))
        elif key in runs:
            runs[key].end, runs[key].how = float(at), event
    return list(runs.values())


def segments(
    run: Run, freezes: list[Freeze], kills: dict[int, float], grace: float
) -> list[tuple[float, float]]:
    """When the run executed: from its start to its end (or its process's death), without
    the times its process was frozen and the first ``grace`` seconds after each thaw."""
    end = run.end if run.how else kills.get(run.pid, math.inf)
    parts = [(run.start, end)]
    for freeze in freezes:
        if freeze.pid != run.pid:
            continue
        cut_from, cut_to = freeze.stopped, freeze.resumed + grace
        parts = [
            piece
            for lo, hi in parts
            for piece in ((lo, min(hi, cut_from)), (max(lo, cut_to), hi))
            if piece[0] < piece[1]
        ]
    return parts


def overlaps(
    runs: list[Run],
    *,
    freezes: list[Freeze] | None = None,
    kills: dict[int, float] | None = None,
    grace: float = 0.5,
) -> list[str]:
    """Every pair of runs of one job that executed at the same time, described."""
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job].append(run)
    found = []
    for job, job_runs in by_job.items():
        spans = [(r, segments(r, freezes or [], kills or {}, grace)) for r in job_runs]
        for i, (a, a_parts) in enumerate(spans):
            for b, b_parts in spans[i + 1 :]:
                for lo1, hi1 in a_parts:
                    for lo2, hi2 in b_parts:
                        if max(lo1, lo2) < min(hi1, hi2):
                            found.append(
                                f"job {job}: token {a.token} (pid {a.pid}, {a.start:.3f}-"
                                f"{a.end:.3f} {a.how}) and token {b.token} (pid {b.pid}, "
                                f"{b.start:.3f}-{b.end:.3f} {b.how}) overlap by "
                                f"{min(hi1, hi2) - max(lo1, lo2):.3f} s"
                            )
    return found
