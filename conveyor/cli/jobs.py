"""The inspecting commands: jobs, job, cancel, retry, queues, workers, schedules, purge.

They work without ``-A`` on the embedded default (``CONVEYOR_URL``, else
``sqlite:///conveyor.db``): they only read and change what the backend stores."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli import render
from conveyor.cli.context import CliState, UserError, pass_state
from conveyor.errors import JobNotFound
from conveyor.inspection import MAX_PAGE
from conveyor.job import JobInfo, State

if TYPE_CHECKING:
    from conveyor.app import App

STATE_NAMES = [s.value for s in State]
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, ensure_ascii=False, indent=2))


def _list(app: App, limit: int | None, **filters: Any) -> list[JobInfo]:
    """Up to ``limit`` jobs (None: all), newest first, a page of app.jobs() at a time."""
    out: list[JobInfo] = []
    cursor: str | None = None
    while limit is None or len(out) < limit:
        size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(out))
        page = app.jobs(limit=size, cursor=cursor, **filters)
        out += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return out


@click.command()
@click.option("--state", type=click.Choice(STATE_NAMES), help="Only jobs in this state.")
@click.option("--task", help="Only jobs of this task (its registered name).")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@pass_state
def jobs(
    cli: CliState,
    state: str | None,
    task: str | None,
    queue: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    infos = _list(cli.app(), limit, state=state, task=task, queue=queue)
    if as_json:
        _echo_json([render.job_json(i) for i in infos])
    elif not infos:
        render.console(stderr=True).print(
            "no jobs" + (" matching" if state or task or queue else "")
        )
    else:
        render.console().print(render.jobs_table(infos))


@click.command(short_help="Show one job, its error and traceback included.")
@click.argument("job_id")
@json_option
@pass_state
def job(cli: CliState, job_id: str, as_json: bool) -> None:
    """Show one job: arguments, state, progress, result or error with its traceback."""
    info = cli.app().job(job_id).info()
    if as_json:
        _echo_json(render.job_json(info))
    else:
        render.console().print(render.job_panel(info))


@click.command()
@click.argument("job_id")
@pass_state
def cancel(cli: CliState, job_id: str) -> None:
    """Cancel a scheduled, queued or running job."""
    app = cli.app()
    handle = app.job(job_id)
    before = handle.state
    if not handle.cancel():
        raise UserError(
            f"job {job_id} is already {handle.state}; only scheduled, queued or running jobs "
            "can be cancelled"
        )
    if before is State.RUNNING:
        click.echo(f"job {job_id}: cancellation requested; its worker stops it")
    else:
        click.echo(f"job {job_id}: cancelled")


@click.command(short_help="Queue a failed job again, or all with --failed.")
@click.argument("job_id", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job.")
@click.option("--task", help="With --failed: only jobs of this task.")
@click.option("--queue", help="With --failed: only jobs of this queue.")
@pass_state
def retry(
    cli: CliState, job_id: str | None, all_failed: bool, task: str | None, queue: str | None
) -> None:
    """Send a failed, cancelled or expired job back to the queue (same id, a fresh retry
    budget), or every failed job with --failed."""
    if (job_id is None) == (not all_failed):
        raise UserError("give a job id or --failed, not both and not neither")
    if (task or queue) and not all_failed:
        raise UserError("--task and --queue only go with --failed")
    app = cli.app()
    if job_id is not None:
        handle = app.job(job_id)
        if not handle.retry():
            raise UserError(
                f"job {job_id} is {handle.state}; only failed, cancelled or expired jobs "
                "can be retried"
            )
        click.echo(f"job {job_id}: queued again")
        return
    # Collect first, then retry: retried jobs leave the failed state while we page.
    ids = [i.id for i in _list(app, None, state=State.FAILED, task=task, queue=queue)]
    retried = 0
    for each in ids:
        try:
            retried += app.retry_job(each)
        except JobNotFound:  # purged meanwhile
            continue
    click.echo(f"{retried} failed job{'s' if retried != 1 else ''} queued again")


@click.command()
@json_option
@pass_state
def queues(cli: CliState, as_json: bool) -> None:
    """How many jobs each queue holds, by state."""
    counts = cli.app().queues()
    if as_json:
        _echo_json({q: {s.value: n for s, n in by.items()} for q, by in counts.items()})
    elif not counts:
        render.console(stderr=True).print("no queues hold jobs")
    else:
        render.console().print(render.queues_table(counts))


@click.command(short_help="Registered workers; stale ones marked.")
@json_option
@pass_state
def workers(cli: CliState, as_json: bool) -> None:
    """Registered workers; those not seen for over a minute are marked stale."""
    found = cli.app().workers()
    now = time.time()
    if as_json:
        _echo_json([render.worker_json(w, now) for w in found])
    elif not found:
        render.console(stderr=True).print("no workers registered")
    else:
        render.console().print(render.workers_table(found, now))


@click.command()
@json_option
@pass_state
def schedules(cli: CliState, as_json: bool) -> None:
    """Periodic tasks: schedule, next due time, last run."""
    app = cli.app()
    specs = {spec.task_name: spec for spec in app.registry.periodic}
    rows = render.schedules_rows(specs, app.backend.schedules(), time.time())
    if as_json:
        _echo_json(rows)
        return
    hint = "" if cli.has_app_spec else " (give -A module:app for its schedules and next due times)"
    if not rows:
        render.console(stderr=True).print(f"no periodic tasks{hint}")
        return
    render.console().print(render.schedules_table(rows))
    if hint:
        render.console(stderr=True).print(f"[dim]only what the backend recorded is known{hint}[/]")


@click.command(short_help="Delete the waiting jobs of a queue.")
@click.argument("queue")
@pass_state
def purge(cli: CliState, queue: str) -> None:
    """Delete the scheduled and queued jobs of QUEUE (running and finished ones stay)."""
    removed = cli.app().purge(queue)
    click.echo(f"purged {removed} job{'s' if removed != 1 else ''} from queue {queue!r}")


COMMANDS = [jobs, job, cancel, retry, queues, workers, schedules, purge]
