"""How jobs, queues, workers and schedules look on a terminal (Rich) and to scripts (JSON)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from conveyor import wire
from conveyor.app import LIVE_WORKER_SECONDS
from conveyor.backends.base import ScheduleState, WorkerInfo
from conveyor.job import JobInfo, Progress, State

#: a worker not seen for longer than this is shown as stale (heartbeats come every few seconds)
STALE_SECONDS = LIVE_WORKER_SECONDS

STATE_STYLES: dict[State, str] = {
    State.SCHEDULED: "cyan",
    State.QUEUED: "blue",
    State.RUNNING: "yellow",
    State.SUCCEEDED: "green",
    State.FAILED: "bold red",
    State.CANCELLED: "magenta",
    State.EXPIRED: "dim",
}


def console(*, stderr: bool = False) -> Console:
    """A console on stdout or stderr. Without a terminal (pipes, CI) tables are laid out
    160 columns wide unless COLUMNS says otherwise, so job ids are not folded."""
    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 160
    return out


def conveyor_command() -> str:
    """How to run this conveyor from the user's shell: ``conveyor`` when that is on PATH and
    is this one, else its path (``.venv/bin/conveyor`` after ``make demo``)."""
    here = os.path.join(os.path.dirname(sys.executable), "conveyor")
    on_path = shutil.which("conveyor")
    if on_path and os.path.realpath(on_path) == os.path.realpath(here):
        return "conveyor"
    if os.path.exists(here):
        relative = os.path.relpath(here)
        return here if relative.startswith("..") else relative
    return f"{os.path.relpath(sys.executable)} -m conveyor"


def state_text(state: State) -> Text:
    return Text(state.value, style=STATE_STYLES.get(state, ""))


def ago(ts: float, *, now: float | None = None) -> str:
    """``3 s ago``, ``5 min ago``, ``2 h ago``, ``4 d ago``."""
    seconds = max(0.0, (time.time() if now is None else now) - ts)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def when(dt: datetime | float | None) -> str:
    """A time in the local zone: ``14:03:07`` today, else ``2024-05-01 14:03``."""
    if dt is None:
        return "-"
    if not isinstance(dt, datetime):
        dt = datetime.fromtimestamp(dt, UTC)
    local = dt.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def progress_text(progress: Progress | None) -> str:
    if progress is None:
        return "-"
    text = f"{progress.percent:.0f}%"
    return f"{text} {progress.message}" if progress.message else text


def to_json(value: Any) -> str:
    """Results and arguments as JSON; values JSON cannot hold (datetime, bytes...) as str."""
    return json.dumps(value, default=str, ensure_ascii=False)


def short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- jobs ----------------------------------------------------------------------------------


#: below this many columns tables shorten ids and drop their least useful columns
NARROW = 120
#: shortened ids keep at least this many characters (the first ones are the creation time)
MIN_PREFIX = 8


def unique_prefixes(ids: list[str], *, at_least: int = MIN_PREFIX) -> dict[str, str]:
    """Each id shortened to the shortest prefix (of at least ``at_least`` characters) that
    tells it apart from the others shown; ``conveyor job`` accepts such a prefix."""
    distinct = sorted(set(ids))
    out: dict[str, str] = {}
    for i, job_id in enumerate(distinct):
        length = at_least
        for neighbour in distinct[max(0, i - 1) : i] + distinct[i + 1 : i + 2]:
            shared = next(
                (n for n, (a, b) in enumerate(zip(job_id, neighbour, strict=False)) if a != b),
                min(len(job_id), len(neighbour)),
            )
            length = max(length, shared + 1)
        out[job_id] = job_id[:length]
    return out


def jobs_table(infos: list[JobInfo], *, width: int) -> Table:
    """Every column on a wide terminal. On a narrow one (80 columns) ids shorten to unique
    prefixes (``conveyor job`` accepts them), attempts and a running job's progress join
    its state, and the queue shows only when the jobs are in more than one."""
    if width >= NARROW:
        table = Table(title=None, show_edge=False, header_style="bold")
        for column in ("id", "task", "state", "attempts", "progress", "created", "queue"):
            table.add_column(column, no_wrap=column in ("id", "state", "created"))
        for info in infos:
            table.add_row(
                info.id,
                escape(info.task),
                state_text(info.state),
                str(info.attempts),
                escape(progress_text(info.progress)),
                when(info.created_at),
                escape(info.queue),
            )
        return table
    ids = unique_prefixes([i.id for i in infos])
    show_queue = len({i.queue for i in infos}) > 1
    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("task", overflow="fold")
    table.add_column("state", no_wrap=True)  # "failed ×3": the attempts when more than one
    table.add_column("created", no_wrap=True)
    if show_queue:
        table.add_column("queue", overflow="fold")
    for info in infos:
        state = state_text(info.state)
        if info.state is State.RUNNING and info.progress is not None:
            state.append(f" {info.progress.percent:.0f}%")
        if info.attempts > 1:
            state.append(f" ×{info.attempts}", style="dim")
        cells: list[str | Text] = [ids[info.id], escape(info.task), state, when(info.created_at)]
        if show_queue:
            cells.append(escape(info.queue))
        table.add_row(*cells)
    return table


def job_panel(info: JobInfo) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("task", escape(info.task)),
        ("state", state_text(info.state)),
        ("queue", escape(info.queue)),
        ("priority", str(info.priority)),
        ("attempts", str(info.attempts)),
        ("args", escape(to_json(list(info.args)))),
        ("kwargs", escape(to_json(info.kwargs))),
        ("progress", escape(progress_text(info.progress))),
        ("created", _iso(info.created_at)),
        ("eta", _iso(info.eta)),
        ("started", _iso(info.started_at)),
        ("finished", _iso(info.finished_at)),
        ("worker" if info.state is State.RUNNING else "ran on", escape(info.worker or "-")),
    ]
    if info.key:
        rows.append(("key", escape(info.key)))
    if info.progress is not None and info.progress.data:
        rows.append(("progress data", escape(to_json(info.progress.data))))
    if info.meta:
        rows.append(("meta", escape(to_json(info.meta))))
    if info.state is State.SUCCEEDED:
        rows.append(("result", escape(to_json(info.result))))
    if info.error is not None:
        rows.append(("error", Text(f"{info.error.type}: {info.error.message}", "red")))
    for name, value in rows:
        grid.add_row(name, value)
    parts: list[Any] = [grid]
    if info.error is not None and info.error.traceback:
        parts += [Text(""), Text(info.error.traceback.rstrip(), style="dim")]
    return Panel(Group(*parts), title=f"job {info.id}", title_align="left", expand=False)


def _iso(dt: datetime | None) -> str:
    return "-" if dt is None else dt.astimezone().isoformat(timespec="seconds")


def job_json(info: JobInfo) -> dict[str, Any]:
    """The HTTP API's shape of a job (conveyor.wire), with its meta as well."""
    return wire.job_json(info) | {"meta": wire.plain(info.meta)}


# -- queues, workers, schedules --------------------------------------------------------------


def queues_table(counts: dict[str, dict[State, int]], serving: dict[str, int]) -> Table:
    """Jobs per queue and state (only the states some queue holds, so it fits 80 columns),
    and how many live workers serve each queue: a queue none serves is marked."""
    table = Table(show_edge=False, header_style="bold")
    table.add_column("queue", overflow="fold")
    present = [state for state in State if any(by.get(state) for by in counts.values())]
    for state in present:
        table.add_column(Text(state.value, style=STATE_STYLES[state]), justify="right")
    table.add_column("total", justify="right")
    table.add_column("workers", justify="right")
    for queue in sorted(counts):
        by_state = counts[queue]
        cells = [str(by_state.get(state, 0) or "-") for state in present]
        live = serving.get(queue, 0)
        workers = Text(str(live)) if live else Text("none", style="bold red")
        table.add_row(escape(queue), *cells, str(sum(by_state.values())), workers)
    return table


def serving_counts(workers: list[WorkerInfo], now: float) -> dict[str, int]:
    """How many live (not stale) workers serve each queue."""
    out: dict[str, int] = {}
    for w in workers:
        if not is_stale(w, now):
            for queue in w.queues:
                out[queue] = out.get(queue, 0) + 1
    return out


def is_stale(worker: WorkerInfo, now: float) -> bool:
    return now - worker.last_seen > STALE_SECONDS


def workers_table(workers: list[WorkerInfo], now: float, *, width: int) -> Table:
    """On a narrow terminal host and pid go (the id holds both) and pool and concurrency
    share a column."""
    narrow = width < NARROW
    table = Table(show_edge=False, header_style="bold")
    columns: tuple[str, ...]
    if narrow:
        columns = ("id", "queues", "pool", "running", "last seen", "done", "failed")
    else:
        columns = (
            "id", "host", "pid", "queues", "pool", "concurrency", "running", "last seen",
            "processed", "failed",
        )  # fmt: skip
    numeric = ("pid", "concurrency", "running", "processed", "done", "failed")
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in numeric else "left",
            overflow="fold",
            no_wrap=column in ("pool", "last seen"),
        )
    for w in sorted(workers, key=lambda w: w.started_at):
        stale = is_stale(w, now)
        seen = Text(ago(w.last_seen, now=now) + (" (stale)" if stale else ""))
        seen.stylize("bold red" if stale else "green")
        if narrow:
            head = [escape(w.id), escape(",".join(w.queues)), f"{w.pool} ×{w.concurrency}"]
        else:
            head = [
                escape(w.id), escape(w.host), str(w.pid), escape(",".join(w.queues)), w.pool,
                str(w.concurrency),
            ]  # fmt: skip
        table.add_row(
            *head,
            str(len(w.running)),
            seen,
            str(w.processed),
            str(w.failed),
            style="dim" if stale else None,
        )
    return table


def worker_json(w: WorkerInfo, now: float) -> dict[str, Any]:
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "queues": w.queues,
        "pool": w.pool,
        "concurrency": w.concurrency,
        "running": w.running,
        "started_at": w.started_at,
        "last_seen": w.last_seen,
        "stale": is_stale(w, now),
        "processed": w.processed,
        "failed": w.failed,
    }


def schedules_rows(
    specs: dict[str, Any], states: list[ScheduleState], now: float
) -> list[dict[str, Any]]:
    """One row per periodic task, from the app's specs and what the backend recorded."""
    recorded = {s.name: s for s in states}
    rows = []
    for name in sorted(set(specs) | set(recorded)):
        spec, state = specs.get(name), recorded.get(name)
        rows.append(
            {
                "task": name,
                "schedule": spec.schedule.describe() if spec is not None else None,
                "next_due": spec.schedule.next_due(now) if spec is not None else None,
                "last_due": state.last_due if state else None,
                "last_job_id": state.last_job_id if state else None,
                "last_enqueued_at": state.last_enqueued_at if state else None,
            }
        )
    return rows


def schedules_table(rows: list[dict[str, Any]], *, width: int) -> Table:
    narrow = width < NARROW
    job_ids = [row["last_job_id"] for row in rows if row["last_job_id"]]
    ids = unique_prefixes(job_ids) if narrow else {i: i for i in job_ids}
    table = Table(show_edge=False, header_style="bold")
    for column in ("task", "schedule", "next due", "last run", "last job"):
        table.add_column(column, overflow="fold", no_wrap=column == "last job")
    for row in rows:
        last = row["last_enqueued_at"] or row["last_due"]
        table.add_row(
            escape(row["task"]),
            escape(row["schedule"] or "- (not in this app)"),
            when(row["next_due"]),
            when(last) if last else "never",
            ids.get(row["last_job_id"], "-"),
        )
    return table


def store_line(store: str) -> None:
    """Name the store a command read, on stderr so that stdout stays the data."""
    console(stderr=True).print(f"[dim]store: {escape(store)}[/]")
