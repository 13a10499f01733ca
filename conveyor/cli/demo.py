"""``conveyor demo``: the embedded default at work, in one process and well under a minute.

One SQLite file in the current directory, an in-process worker, a handful of realistic jobs
(a pipeline reporting progress, a flaky call that succeeds on its third attempt, a delayed
job, a job that fails for good, an async task, quick ones), live progress bars, a summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Column, Table

from conveyor.app import App
from conveyor.cli import render
from conveyor.job import Job, JobRecord, State
from conveyor.task import CallOptions

#: the demo gives up (exit status 1) if its jobs are not all final by then
DEADLINE_SECONDS = 45.0
POLL_SECONDS = 0.1


@dataclass
class Watched:
    """One job on screen: its progress bar row and what was last seen of it."""

    job: Job
    label: str
    row: TaskID
    seen: tuple[State, int] | None = None
    record: JobRecord | None = field(default=None, repr=False)


@click.command(short_help="A self-contained demo: one SQLite file, no server.")
def demo() -> None:
    """A self-contained demo on the embedded default: one SQLite file, no server."""
    from conveyor.cli import demo_tasks  # here: other commands (a worker) need not load it

    out = render.console()
    path = Path(demo_tasks.DEMO_FILE)
    for stale in (
        path,
        *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal", "-conveyor-gate")),
    ):
        stale.unlink(missing_ok=True)
    out.print(
        f"[bold]conveyor demo[/]: the embedded default, one SQLite file "
        f"([cyan]{path.resolve()}[/]) and no server; a worker with 4 threads runs in this "
        "process.\n"
    )
    app = demo_tasks.register(App(demo_tasks.DEMO_URL))
    try:
        with app.worker(concurrency=4, schedule=False):
            records = _run(app, out)
    finally:
        app.close()
    out.print()
    out.print(_summary(app, records, width=out.width))
    failed = [r for r in records if r.state is State.FAILED]
    # The command as this shell can run it: `make demo` runs .venv/bin/conveyor, which is
    # not on PATH until the venv is activated.
    command = f"CONVEYOR_URL={demo_tasks.DEMO_URL} {escape(render.conveyor_command())}"
    out.print(f"\nThe jobs are still in [cyan]{demo_tasks.DEMO_FILE}[/]. Next, try:")
    out.print(f"  {command} jobs", soft_wrap=True)
    if failed:
        out.print(f"  {command} job {failed[0].id}", soft_wrap=True)
    if not all(r.state.is_final for r in records):
        raise click.ClickException(f"the demo's jobs did not finish in {DEADLINE_SECONDS:g} s")


def _enqueue(app: App) -> list[tuple[str, Job]]:
    def submit(
        task: str, *args: object, countdown: float | None = None, key: str | None = None
    ) -> Job:
        return app.submit(task, args, {}, CallOptions(countdown=countdown, key=key))

    jobs = [
        ("assess('Acme Corp')", submit("demo.assess", "Acme Corp")),
        ("assess('Globex')", submit("demo.assess", "Globex")),
        ("fetch_rates('USD')", submit("demo.fetch_rates", "USD")),
        ("send_reminder(42), in 2 s", submit("demo.send_reminder", 42, countdown=2)),
        ("import_prices('prices.csv')", submit("demo.import_prices", "prices.csv")),
        ("summarize(7), async", submit("demo.summarize", 7)),
        ("resize_image('logo.png', 256)", submit("demo.resize_image", "logo.png", 256)),
    ]
    jobs += [(f"add({x}, {y})", submit("demo.add", x, y)) for x, y in ((2, 3), (40, 2))]
    # An idempotency key: enqueueing it again returns the job it made the first time.
    first = submit("demo.add", 1, 1, key="demo-add-once")
    again = submit("demo.add", 1, 1, key="demo-add-once")
    jobs.append(("add(1, 1), key='demo-add-once'", first))
    assert again.id == first.id
    return jobs


def _run(app: App, out: Console) -> list[JobRecord]:
    # Fixed widths for label, bar and state; the message takes what is left and is cut to
    # one line, so every row stays one line at 80 columns.
    narrow = out.width < 100
    columns = (
        TextColumn(
            "{task.description}",
            table_column=Column(width=28 if narrow else 32, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=12 if narrow else 24),
        TaskProgressColumn(table_column=Column(width=4, no_wrap=True)),
        TextColumn("{task.fields[state]}", table_column=Column(width=9, no_wrap=True)),
        TextColumn(
            "[dim]{task.fields[message]}",
            table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
        ),
    )
    started = time.monotonic()
    with Progress(*columns, console=out, refresh_per_second=10, expand=True) as bars:
        watched = [
            Watched(job, label, bars.add_task(label, total=100, state="", message=""))
            for label, job in _enqueue(app)
        ]
        bars.console.print(
            f"enqueued {len(watched)} jobs (the last one twice, with one key: one job)"
        )
        while time.monotonic() - started < DEADLINE_SECONDS:
            for w in watched:
                _refresh(app, bars, w, started)
            if all(w.record is not None and w.record.state.is_final for w in watched):
                break
            time.sleep(POLL_SECONDS)
    return [w.record for w in watched if w.record is not None]


def _refresh(app: App, bars: Progress, w: Watched, started: float) -> None:
    record = app.get_record(w.job.id)
    if record is None:
        return
    w.record = record
    if w.seen != (record.state, record.attempts):
        w.seen = (record.state, record.attempts)
        bars.console.print(_event(w.label, record, time.monotonic() - started))
    percent = record.progress.percent if record.progress else 0.0
    if record.state is State.SUCCEEDED:
        percent = 100.0
    message = record.progress.message if record.progress and record.progress.message else ""
    if record.state is State.FAILED and record.error:
        message = f"{record.error.type}: {record.error.message}"
    style = render.STATE_STYLES.get(record.state, "")
    bars.update(
        w.row,
        completed=percent,
        state=f"[{style}]{record.state:<9}[/]",
        message=escape(render.short(message, 48)),
    )


def _event(label: str, record: JobRecord, elapsed: float) -> str:
    style = render.STATE_STYLES.get(record.state, "")
    text = f"[dim]{elapsed:5.1f} s[/]  {escape(label):<32} [{style}]{record.state}[/]"
    if record.state is State.RUNNING:
        text += f" (attempt {record.attempts})"
    elif record.state in (State.SCHEDULED, State.QUEUED) and record.error is not None:
        text += f": retrying after {escape(record.error.type)}: {escape(record.error.message)}"
    elif record.state is State.FAILED and record.error is not None:
        text += f": {escape(record.error.type)}: {escape(record.error.message)}"
    return text


def _summary(app: App, records: list[JobRecord], *, width: int) -> Table:
    """What became of each job. On a narrow terminal the ids go (``conveyor jobs`` shows
    them) and results are cut to one line."""
    narrow = width < render.NARROW
    table = Table(title="What happened", show_edge=False, header_style="bold")
    table.add_column("task", overflow="fold", min_width=18 if narrow else None)
    if not narrow:
        table.add_column("job id", no_wrap=True)
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column("tries" if narrow else "attempts", justify="right", no_wrap=True)
    # What the other columns leave: 18 + 9 + 5 + 8 and the rules between them.
    result_width = max(20, width - 54) if narrow else None
    table.add_column("result or error", no_wrap=narrow, overflow="ellipsis", max_width=result_width)
    table.add_column("duration", no_wrap=True)
    for r in records:
        if r.state is State.SUCCEEDED:
            outcome = escape(render.short(render.to_json(app.decode_result(r)), 60))
        elif r.error is not None:
            outcome = f"[red]{escape(r.error.type)}: {escape(render.short(r.error.message))}[/]"
        else:
            outcome = "-"
        # From enqueue to the end: retries and countdowns show, not only the last attempt.
        ran = f"{r.finished_at - r.created_at:.1f} s" if r.finished_at is not None else "-"
        cells = [escape(r.task), *([] if narrow else [r.id])]
        table.add_row(*cells, render.state_text(r.state), str(r.attempts), outcome, ran)
    return table
