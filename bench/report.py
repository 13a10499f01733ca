"""The table (Rich, on the terminal), bench/RESULTS.md, and the raw JSON in bench/out/."""

from __future__ import annotations

import json
import os
import platform
import re
import sqlite3
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import ratios
from bench.measures import POLL_SECONDS, Sizes
from bench.runner import Results, Stat


@dataclass(frozen=True, slots=True)
class Goal:
    """A target from the issues: ``at_least`` or at most ``value``, for some stores."""

    value: float
    at_least: bool
    stores: tuple[str, ...] | None = None  # None: every store
    source: str = "issue 2"

    def applies(self, target: str) -> bool:
        if not target.startswith("conveyor/"):
            return False  # a yardstick or a peer: the targets are conveyor's
        return self.stores is None or any(target.endswith(s) for s in self.stores)

    def met(self, value: float) -> bool:
        return value >= self.value if self.at_least else value <= self.value

    def text(self) -> str:
        where = f" ({', '.join(self.stores)})" if self.stores else ""
        return f"{'≥' if self.at_least else '≤'} {self.value:,g}{where}, {self.source}"


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    metric: str
    goals: tuple[Goal, ...] = ()
    digits: int = 0


RSS_GOAL = Goal(35, False, None, "issue 6")
SQLITE = ("sqlite-full", "sqlite-normal")
ROWS = (
    Row(
        "delay() jobs/s",
        "delay_per_s",
        (Goal(20_000, True, ("normal",)), Goal(6_000, True, ("redis",), "issue 6")),
    ),
    Row("enqueue_many jobs/s", "enqueue_many_per_s", (Goal(50_000, True),)),
    Row(
        "end to end, 1 worker process, jobs/s",
        "e2e_1p_per_s",
        (
            Goal(5_000, True, ("normal",)),
            Goal(2_000, True, ("full",), "issue 6"),
            Goal(5_000, True, ("redis",), "issue 6"),
        ),
    ),
    Row(
        "end to end, 2 worker processes, jobs/s",
        "e2e_2p_per_s",
        (Goal(9_000, True, ("redis",), "issue 6"),),
    ),
    Row(
        "pickup p50 across processes, ms",
        "pickup_p50_ms",
        (Goal(5, False, SQLITE), Goal(1, False, ("redis",), "issue 6")),
        2,
    ),
    Row("pickup p99 across processes, ms", "pickup_p99_ms", (), 2),
    Row("pickup p50 embedded, ms", "embedded_p50_ms", (Goal(1, False, None, "issue 6"),), 2),
    Row("pickup p99 embedded, ms", "embedded_p99_ms", (), 2),
    Row("worker RSS after the 1-process run, MiB", "rss_mb", (RSS_GOAL,), 1),
    Row("yardstick: pipelined RPUSH /s", "raw_push_per_s"),
    Row("yardstick: pipelined LPOP /s", "raw_pop_per_s"),
    Row("yardstick: insert+delete cycles /s", "cycle_per_s"),
)

HOW = f"""\
How each number is measured (every measurement starts from a new, empty store: a new file in
a temporary directory, or the bench's own redis-server emptied with FLUSHALL; the enqueuing
side is this process, single-threaded):

- **delay()**: the system's one-at-a-time call (conveyor `noop.delay()`, Celery `delay()`,
  Dramatiq `send()`, Huey `noop()`, RQ `enqueue()`) N times in a loop; N / elapsed.
- **enqueue_many**: the bulk call, N jobs in batches of 1000: conveyor `enqueue_many`, Celery
  `group(...).apply_async()`, Dramatiq `group(...).run()`, RQ `enqueue_many`; Huey has none.
- **end to end**: N no-op jobs are enqueued first (not timed). Then the worker processes
  are started (`python -m bench.worker`: the system's own worker, configured as listed
  below) and each prepares (imports, connects) and says "ready"; all are told "go". The
  clock starts when the first job is seen taken (the pending count polled every 1 ms drops
  below N; a peer's start-up after "go" is thus not job time) and stops when the pending
  count, polled every {POLL_SECONDS * 1000:.0f} ms, is zero. N / elapsed. Pending is:
  conveyor `queue_counts()` not final; Celery the queue list plus the `unacked` hash (early
  acks: acknowledged as a task starts); Dramatiq the queue's `.msgs` hash (acknowledged
  after the run); Huey `pending_count()`; RQ the queue plus its started registry. Each
  process count is run at every concurrency C the target lists, and the best C (by median)
  is reported with its setting. Workers are then stopped by PID with SIGTERM.
- **pickup**: one worker process is started and left idle; then a job is enqueued every
  20 ms. The job takes `time.time()` first thing; latency = that minus `time.time()` right
  after the enqueue call returned (one machine, one clock; it can be below zero when the
  pop completes before the push's reply is read, as for the raw BLPOP). conveyor and Huey
  return it as the job's result; Celery, Dramatiq and RQ (no result backend configured)
  write it into a Redis hash after taking it. p50 and p99 over one repetition's jobs.
  **embedded**: conveyor's worker in threads of the enqueuing process.
- **worker RSS**: VmRSS of the worker process and all its descendants (Celery's prefork
  children count), read at the end of the one-process end-to-end run at the reported
  concurrency, before it is stopped.
- **yardsticks**: redis-py pipelines of 1,000 RPUSH, then of 1,000 LPOP, in one process;
  its "worker" is one BLPOP per item. sqlite3: one `BEGIN IMMEDIATE; INSERT; COMMIT` then
  one `BEGIN IMMEDIATE; DELETE; COMMIT` per cycle (two commits per job, like enqueue and
  finish), conveyor's schema and row.
- Repetitions are interleaved (each repetition runs every measurement on every target in
  turn); a cell shows the median and, in brackets, min–max over repetitions.
"""


def machine(workdir: Path) -> dict[str, Any]:
    def first(path: str, prefix: str) -> str:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(prefix):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"

    import conveyor

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": first("/proc/cpuinfo", "model name"),
        "memory": first("/proc/meminfo", "MemTotal"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "conveyor": conveyor.__version__,
        "filesystem": filesystem(workdir),
    }


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, fstype, *_ = line.split()
                inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fstype
    except OSError:
        pass
    return kind


def load_text(results: Results) -> str:
    loads = [entry["load1"] for entry in results.load]
    if not loads:
        return "unknown"
    return (
        f"median {statistics.median(loads):.1f}, min {min(loads):.1f}, max {max(loads):.1f} "
        "(other work on the machine shows as a load above the CPU count)"
    )


def cell(stat: Stat | None, digits: int) -> str:
    if stat is None:
        return "—"
    text = f"{stat.median:,.{digits}f} ({stat.low:,.{digits}f}–{stat.high:,.{digits}f})"
    return f"{text} [{stat.setting}]" if stat.setting else text


def verdict(row: Row, target: str, stat: Stat | None) -> str:
    goals = [g for g in row.goals if g.applies(target)]
    if stat is None or not goals:
        return ""
    return " ✓" if all(g.met(stat.median) for g in goals) else " ✗"


def groups(results: Results) -> list[tuple[str, list[str]]]:
    """The targets on Redis and the others (SQLite), each with its rows."""
    summary = results.summary()
    present = [t for t in results.targets if t.name in summary]
    return [
        (title, [t.name for t in present if t.needs_redis == redis])
        for title, redis in (("On Redis", True), ("On SQLite", False))
        if any(t.needs_redis == redis for t in present)
    ]


def rows_of(results: Results, names: list[str]) -> list[tuple[str, list[str], str]]:
    summary = results.summary()
    out = []
    for row in ROWS:
        if not any(row.metric in summary[n] for n in names):
            continue
        cells = [
            cell(summary[n].get(row.metric), row.digits)
            + verdict(row, n, summary[n].get(row.metric))
            for n in names
        ]
        goals = "; ".join(g.text() for g in row.goals if any(g.applies(n) for n in names))
        out.append((row.label, cells, goals))
    return out


def table(results: Results) -> list[Table]:
    tables = []
    for title, names in groups(results):
        out = Table(title=f"{title}: median (min–max)")
        out.add_column("measure")
        for name in names:
            out.add_column(name, justify="right")
        out.add_column("target")
        for label, cells, goals in rows_of(results, names):
            out.add_row(label, *cells, goals)
        tables.append(out)
    return tables


def markdown(results: Results, info: dict[str, Any], command: str, sizes: Sizes) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench` in the bench's own environment; do not edit",
        "by hand; run it again).",
        "",
        f"Command: `{command}`  ",
        f"Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {sizes.repetitions} repetitions.",
        "",
        "## Machine",
        "",
        f"- CPUs: {info['nproc']} × {info['cpu']}; memory {info['memory']}",
        f"- {info['os']}; Python {info['python']}; SQLite {info['sqlite']}",
        f"- redis-server {info.get('redis') or '(not run)'} on 127.0.0.1, started by the bench "
        "on a free port in a temporary directory, no persistence (no RDB, no AOF) for all",
        f"- temporary directory on {info['filesystem']}",
        f"- load average (1 min) before the measurements: {load_text(results)}",
        "",
    ]
    for title, names in groups(results):
        lines += [f"## {title}", "", "| measure | " + " | ".join(names) + " | target |"]
        lines.append("|---" * (len(names) + 2) + "|")
        for label, cells, goals in rows_of(results, names):
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {goals} |")
        lines.append("")
    lines += [
        "✓ / ✗: conveyor's median meets / misses the target that applies to that store. "
        "redis-py/raw and sqlite3/raw-* are the yardsticks: the store alone, no task queue.",
        "",
        *ratios.markdown(results),
        "## Systems, versions and configurations",
        "",
        "| target | version | configuration | concurrencies tried | jobs per end-to-end run |",
        "|---|---|---|---|---|",
    ]
    for t in results.targets:
        jobs = min(sizes.throughput_jobs, t.throughput_jobs or sizes.throughput_jobs)
        tried = ", ".join(map(str, sizes.concurrencies or t.concurrencies))
        lines.append(f"| {t.name} | {t.version} | {t.config} | {tried} | {jobs:,} |")
    lines += [
        "",
        "Sizes: "
        f"delay() {sizes.delay_jobs:,} jobs; enqueue_many {sizes.bulk_jobs:,} jobs in batches of "
        f"{sizes.bulk_batch:,}; end to end up to {sizes.throughput_jobs:,} jobs per run (fewer "
        f"for the slowest peers, as listed); pickup {sizes.pickup_jobs} jobs "
        f"{sizes.pickup_spacing_seconds * 1000:.0f} ms apart.",
        "",
        "## Memory over a million jobs",
        "",
        "Worker RSS sampled every 100,000 jobs of a million: see [MEMORY.md](MEMORY.md), written "
        "by `python -m bench.rss_flat`.",
        "",
        "## How it is measured",
        "",
        HOW,
    ]
    return "\n".join(lines)


def write_json(
    out_dir: Path, results: Results, info: dict[str, Any], command: str, sizes: Sizes
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {
        "command": command,
        "machine": info,
        "sizes": asdict(sizes),
        "versions": {t.name: t.version for t in results.targets},
        "configurations": {t.name: t.config for t in results.targets},
        "raw": results.raw,
        "load": results.load,
        "summary": {
            name: {metric: stat.as_json() for metric, stat in stats.items()}
            for name, stats in results.summary().items()
        },
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def console() -> Console:
    # Wide enough for one column per target even when stdout is not a terminal.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)


#: a section another bench writes into RESULTS.md (bench.like, bench.flower): kept as it is
MARKED = re.compile(r"<!-- ([\w-]+): begin -->.*?<!-- \1: end -->", re.DOTALL)


def marked_sections(current: str) -> str:
    """The sections of the other benches in ``current``, to follow the new main report."""
    return "".join(f"\n\n{m.group(0)}" for m in MARKED.finditer(current)) + "\n"
