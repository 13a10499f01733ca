"""``conveyor enqueue TASK [JSON_ARG ...] [--wait]``: enqueue by name, and optionally follow
the job with a progress bar until it is final."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Column

from conveyor.app import App
from conveyor.cli import render
from conveyor.cli.context import CliState, UserError, pass_state
from conveyor.errors import JobNotFound
from conveyor.job import Job, JobRecord, State
from conveyor.task import CallOptions

#: how often the progress bar reads the job when no change wakes it sooner
POLL_SECONDS = 0.1


@click.command(
    short_help="Enqueue a job by task name; --wait follows it.",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("task_name", metavar="TASK")
@click.argument("json_args", nargs=-1, metavar="[JSON_ARG]...")
@click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments: '{\"x\": 1}'.")
@click.option("--queue", help="Send to this queue instead of the task's own.")
@click.option("--priority", type=click.IntRange(0, 100), help="0-100, higher runs first.")
@click.option("--countdown", type=click.FloatRange(min=0), help="Run no sooner than S seconds.")
@click.option("--key", help="Idempotency key: enqueueing it again returns the same job.")
@click.option(
    "--wait", is_flag=True, help="Show progress until the job is final; print its result."
)
@click.option("--timeout", type=click.FloatRange(min=0), help="With --wait: give up after S s.")
@pass_state
def enqueue(
    cli: CliState,
    task_name: str,
    json_args: tuple[str, ...],
    kwargs_json: str | None,
    queue: str | None,
    priority: int | None,
    countdown: float | None,
    key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Enqueue TASK with JSON arguments (`conveyor enqueue tasks.add 2 3`) and print the job id.

    Strings are JSON too: '"text"'. With --wait: exit status 0 when the job succeeds (its
    result is printed as JSON), 1 when it failed, was cancelled, expired or --timeout passed.
    """
    if timeout is not None and not wait:
        raise UserError("--timeout goes with --wait")
    args = [_parse_json(raw, f"argument {i}") for i, raw in enumerate(json_args, 1)]
    kwargs = _parse_json(kwargs_json, "--kwargs") if kwargs_json is not None else {}
    if not isinstance(kwargs, dict):
        raise UserError(f"--kwargs must be a JSON object, not {kwargs_json}")
    app = cli.app(needs_tasks="enqueue")
    _check_call(app, task_name, args, kwargs)
    options = CallOptions(countdown=countdown, queue=queue, priority=priority, key=key)
    job = app.submit(task_name, tuple(args), kwargs, options)
    if not wait:
        click.echo(job.id)
        return
    ctx = click.get_current_context()
    try:
        record = follow(app, job, timeout)
    except KeyboardInterrupt:
        # Ctrl-C stops the watching, not the job: 130 is the shell's status for SIGINT.
        click.echo(
            f"interrupted: job {job.id} keeps running; follow it with: conveyor job {job.id}",
            err=True,
        )
        ctx.exit(130)
    if record.state is State.SUCCEEDED:
        click.echo(render.to_json(app.decode_result(record)))
        return
    if not record.state.is_final:
        click.echo(f"error: job {job.id} is still {record.state} after {timeout:g} s", err=True)
    elif record.state is State.FAILED and record.error is not None:
        err = record.error
        click.echo(
            f"error: job {job.id} failed: {err.type}: {err.message} "
            f"(conveyor job {job.id} shows the traceback)",
            err=True,
        )
    else:
        click.echo(f"error: job {job.id} {record.state}", err=True)
    ctx.exit(1)


def _parse_json(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if raw.startswith("--"):
            raise UserError(f"no such option: {raw} (see conveyor enqueue --help)") from None
        raise UserError(f"{what} is not JSON: {raw!r} (quote strings: '\"text\"')") from None


def _check_call(app: App, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Bad input fails here, at the call site, not later in a worker."""
    if name not in app.registry:
        known = ", ".join(app.registry.names()) or "none"
        raise UserError(f"no task registered under the name {name!r} (known: {known})")
    try:
        app.registry.get(name).check_args(name, tuple(args), kwargs)
    except TypeError as exc:
        raise UserError(str(exc)) from None


def follow(app: App, job: Job, timeout: float | None) -> JobRecord:
    """A progress bar fed by the job's progress and state, on stderr, until the job is final
    or ``timeout`` passes; returns the last record read."""
    deadline = None if timeout is None else time.monotonic() + timeout
    out = render.console(stderr=True)
    out.print(f"job {job.id} enqueued; Ctrl-C stops the watching, not the job")
    # Fixed widths but for the message, which takes what is left and is cut to one line:
    # the bar stays one readable line at 80 columns.
    columns = (
        TextColumn(
            "{task.description}",
            table_column=Column(max_width=24, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=20 if out.width < render.NARROW else 40),
        TaskProgressColumn(table_column=Column(width=4, no_wrap=True)),
        TextColumn("{task.fields[state]}", table_column=Column(width=9, no_wrap=True)),
        TextColumn(
            "{task.fields[message]}",
            table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, expand=True) as bar:
        row = bar.add_task(escape(job.task), total=100, state="", message="")
        while True:
            record = app.get_record(job.id)
            if record is None:
                raise JobNotFound(job.id)
            percent = record.progress.percent if record.progress else 0.0
            if record.state is State.SUCCEEDED:
                percent = 100.0
            message = (record.progress.message or "") if record.progress else ""
            style = render.STATE_STYLES.get(record.state, "")
            bar.update(
                row,
                completed=percent,
                state=f"[{style}]{record.state}[/]",
                message=render.short(message, 50).replace("[", r"\["),
            )
            if record.state.is_final:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                return record
            app.backend.wait_for_change(job.id, POLL_SECONDS)
