"""The table (Rich, on the terminal), bench/RESULTS.md, and the raw JSON in bench/out/."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

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
ROWS = (
    Row("delay() jobs/s", "delay_per_s", (Goal(20_000, True, ("normal",)),)),
    Row("enqueue_many jobs/s", "enqueue_many_per_s", (Goal(50_000, True),)),
    Row(
        "end to end, 1 worker process, jobs/s",
        "e2e_1p_per_s",
        (Goal(5_000, True, ("normal",)), Goal(2_000, True, ("full",), "issue 6")),
    ),
    Row("end to end, 2 worker processes, jobs/s", "e2e_2p_per_s"),
    Row("pickup p50 across processes, ms", "pickup_p50_ms", (Goal(5, False),), 2),
    Row("pickup p99 across processes, ms", "pickup_p99_ms", (), 2),
    Row("pickup p50 embedded, ms", "embedded_p50_ms", (Goal(1, False, None, "issue 6"),), 2),
    Row("pickup p99 embedded, ms", "embedded_p99_ms", (), 2),
    Row("worker RSS after the 1-process run, MiB", "rss_mb", (RSS_GOAL,), 1),
)

HOW = f"""\
How each number is measured (every measurement starts from a new, empty store in a
temporary directory; the enqueuing side is this process, single-threaded):

- **delay()**: `noop.delay()` called N times in a loop; N / elapsed. Each call is one
  write transaction (one commit).
- **enqueue_many**: `app.enqueue_many(noop.s() for ...)` for N jobs in batches of 1000
  (one transaction per batch); N / elapsed, record building included.
- **end to end**: N no-op jobs are enqueued first (not timed). Then the worker processes
  are started (`python -m bench.worker`, which runs `app.worker(concurrency=C,
  schedule=False).run()`) and each prepares (imports, opens the store) and says "ready";
  the clock starts when all are told "go", and stops when `app.backend.queue_counts()`,
  polled every {POLL_SECONDS * 1000:.0f} ms, shows no job that is not final. N / elapsed.
  Each process count is run at every concurrency C listed, and the best C (by median) is
  reported with its setting. Workers are then stopped by PID with SIGTERM.
- **pickup**: one worker process (thread pool, concurrency 8) is started and left idle;
  then a job is enqueued every 20 ms. The job returns `time.time()` taken when it starts;
  latency = that start time minus `time.time()` right after `delay()` returned (one
  machine, one clock). p50 and p99 over the jobs of one repetition. **embedded**: the same
  with the worker in threads of the enqueuing process (`with app.worker(): ...`), woken
  by the in-process signal.
- **worker RSS**: VmRSS from /proc/PID/status of the worker process, read at the end of
  the one-process end-to-end run at the reported concurrency, before it is stopped.
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


def table(results: Results) -> Table:
    summary = results.summary()
    names = [t.name for t in results.targets if t.name in summary]
    out = Table(title="conveyor benchmark: median (min–max)")
    out.add_column("measure")
    for name in names:
        out.add_column(name, justify="right")
    out.add_column("target")
    for row in ROWS:
        if not any(row.metric in summary[n] for n in names):
            continue
        cells = [
            cell(summary[n].get(row.metric), row.digits)
            + verdict(row, n, summary[n].get(row.metric))
            for n in names
        ]
        out.add_row(row.label, *cells, "; ".join(g.text() for g in row.goals))
    return out


def markdown(results: Results, info: dict[str, Any], command: str, sizes: Sizes) -> str:
    summary = results.summary()
    names = [t.name for t in results.targets if t.name in summary]
    versions = ", ".join(f"{t.name} {t.version}" for t in results.targets)
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench` (do not edit by hand; run it again).",
        "",
        f"Command: `{command}`  ",
        f"Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {sizes.repetitions} repetitions.",
        "",
        "## Machine",
        "",
        f"- CPUs: {info['nproc']} × {info['cpu']}; memory {info['memory']}",
        f"- {info['os']}; Python {info['python']}; SQLite {info['sqlite']}",
        f"- temporary directory on {info['filesystem']}",
        f"- load average (1 min) before the measurements: {load_text(results)}",
        f"- systems: {versions}",
        "",
        "## Results",
        "",
        "| measure | " + " | ".join(names) + " | target |",
        "|---" * (len(names) + 2) + "|",
    ]
    for row in ROWS:
        if not any(row.metric in summary[n] for n in names):
            continue
        cells = [
            cell(summary[n].get(row.metric), row.digits)
            + verdict(row, n, summary[n].get(row.metric))
            for n in names
        ]
        goals = "; ".join(g.text() for g in row.goals)
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {goals} |")
    lines += [
        "",
        "✓ / ✗: the median meets / misses the target that applies to that store. The sqlite3 "
        "columns are the yardstick: SQLite alone, conveyor's schema and row, no conveyor code.",
        "",
        "Sizes: "
        f"delay() {sizes.delay_jobs:,} jobs; enqueue_many {sizes.bulk_jobs:,} jobs in batches of "
        f"{sizes.bulk_batch:,}; end to end {sizes.throughput_jobs:,} jobs per run at "
        f"concurrency {', '.join(map(str, sizes.concurrencies or (8, 32)))}; pickup "
        f"{sizes.pickup_jobs} jobs {sizes.pickup_spacing_seconds * 1000:.0f} ms apart.",
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
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)
