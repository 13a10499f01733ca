"""The inspecting commands: jobs, job, cancel, retry, queues, workers, schedules, purge.

They work without ``-A`` on the embedded default (``CONVEYOR_URL``, else
``sqlite:///conveyor.db``): they only read and change what the backend stores."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from rich.markup import escape

from conveyor.app import App
from conveyor.cli import render
from conveyor.cli.context import CliState, UserError, pass_state
from conveyor.errors import JobNotFound
from conveyor.inspection import MAX_PAGE
from conveyor.job import JobInfo, State

STATE_NAMES = [s.value for s in State]
#: a prefix shorter than this is taken as a whole id (and so not found)
MIN_PREFIX_GIVEN = 4
#: how many jobs a prefix lookup reads: enough to tell one match from several
PREFIX_CANDIDATES = 3
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
    """List jobs, newest first. On a narrow terminal ids are shortened to prefixes, which
    `conveyor job` accepts."""
    app = cli.store_app("jobs")
    infos = _list(app, limit, state=state, task=task, queue=queue)
    if as_json:
        _echo_json([render.job_json(i) for i in infos])
    elif not infos:
        matching = " matching" if state or task or queue else ""
        render.console(stderr=True).print(f"no jobs{matching} in {escape(cli.store_name())}")
    else:
        out = render.console()
        out.print(render.jobs_table(infos, width=out.width))
        render.store_line(cli.store_name())


@click.command(short_help="Show one job, its error and traceback included.")
@click.argument("job_id")
@json_option
@pass_state
def job(cli: CliState, job_id: str, as_json: bool) -> None:
    """Show one job: arguments, state, progress, result or error with its traceback.
    JOB_ID may be a prefix of the id, as `conveyor jobs` shows on a narrow terminal."""
    app = cli.store_app("job")
    info = app.job(resolve_id(app, job_id)).info()
    if as_json:
        _echo_json(render.job_json(info))
    else:
        render.console().print(render.job_panel(info))
        render.store_line(cli.store_name())


@click.command(short_help="Cancel a scheduled, queued or running job.")
@click.argument("job_id")
@pass_state
def cancel(cli: CliState, job_id: str) -> None:
    """Cancel a scheduled, queued or running job (JOB_ID or a prefix of it)."""
    app = cli.store_app("cancel")
    job_id = resolve_id(app, job_id)
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
    render.store_line(cli.store_name())


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
    app = cli.store_app("retry")
    if job_id is not None:
        job_id = resolve_id(app, job_id)
        handle = app.job(job_id)
        if not handle.retry():
            raise UserError(
                f"job {job_id} is {handle.state}; only failed, cancelled or expired jobs "
                "can be retried"
            )
        click.echo(f"job {job_id}: queued again")
        render.store_line(cli.store_name())
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
    render.store_line(cli.store_name())


@click.command(short_help="Jobs per queue and state; queues no worker serves marked.")
@json_option
@pass_state
def queues(cli: CliState, as_json: bool) -> None:
    """How many jobs each queue holds, by state, and how many live workers serve it: a
    queue no worker serves is marked (its jobs wait until one does)."""
    app = cli.store_app("queues")
    counts = app.queues()
    found = app.workers()
    serving = render.serving_counts(found, time.time())
    if as_json:
        _echo_json({q: {s.value: n for s, n in by.items()} for q, by in counts.items()})
    elif not counts:
        render.console(stderr=True).print(f"no queues hold jobs in {escape(cli.store_name())}")
    else:
        render.console().print(render.queues_table(counts, serving))
        unserved = sorted(q for q in counts if not serving.get(q))
        if unserved:
            render.console(stderr=True).print(
                f"[bold red]no live worker serves {escape(', '.join(unserved))}[/]: start "
                f"one with conveyor -A {escape(cli.app_spec or 'module:app')} worker -Q "
                f"{escape(','.join(unserved))}"
            )
        render.store_line(cli.store_name())


@click.command(short_help="Registered workers; stale ones marked.")
@json_option
@pass_state
def workers(cli: CliState, as_json: bool) -> None:
    """Registered workers; those not seen for over a minute are marked stale."""
    app = cli.store_app("workers")
    found = app.workers()
    now = time.time()
    if as_json:
        _echo_json([render.worker_json(w, now) for w in found])
    elif not found:
        render.console(stderr=True).print(f"no workers registered in {escape(cli.store_name())}")
    else:
        out = render.console()
        out.print(render.workers_table(found, now, width=out.width))
        render.store_line(cli.store_name())


@click.command()
@json_option
@pass_state
def schedules(cli: CliState, as_json: bool) -> None:
    """Periodic tasks: schedule, next due time, last run."""
    app = cli.store_app("schedules")
    specs = {spec.task_name: spec for spec in app.registry.periodic}
    rows = render.schedules_rows(specs, app.backend.schedules(), time.time())
    if as_json:
        _echo_json(rows)
        return
    hint = "" if cli.has_app_spec else " (give -A module:app for its schedules and next due times)"
    if not rows:
        store = escape(cli.store_name())
        render.console(stderr=True).print(f"no periodic tasks in {store}{hint}")
        return
    out = render.console()
    out.print(render.schedules_table(rows, width=out.width))
    if hint:
        render.console(stderr=True).print(f"[dim]only what the backend recorded is known{hint}[/]")
    render.store_line(cli.store_name())


@click.command(short_help="Delete the waiting jobs of a queue.")
@click.argument("queue")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def purge(cli: CliState, queue: str, yes: bool) -> None:
    """Delete the scheduled and queued jobs of QUEUE (running and finished ones stay). Asks
    first, unless --yes."""
    app = cli.store_app("purge")
    store = cli.store_name()
    by_state = app.queues().get(queue, {})
    waiting = by_state.get(State.SCHEDULED, 0) + by_state.get(State.QUEUED, 0)
    if not waiting:
        click.echo(f"queue {queue!r} holds no waiting jobs in {store}: nothing to purge")
        return
    if not yes:
        question = f"delete the {_jobs(waiting)} waiting in queue {queue!r} of {store}?"
        if not sys.stdin.isatty():  # a script or a pipe: nobody to answer
            raise UserError(f"purge would {question[:-1]}; add --yes to confirm")
        if not click.confirm(question, err=True):
            click.echo("nothing purged")
            return
    removed = app.purge(queue)
    click.echo(f"purged {_jobs(removed)} from queue {queue!r} of {store}")


def _jobs(n: int) -> str:
    return f"{n} job{'s' if n != 1 else ''}"


def resolve_id(app: App, given: str) -> str:
    """A job id, or a prefix of one that only one job has (``conveyor jobs`` shortens ids so
    on narrow terminals). Found through the backend's listing, newest first by id."""
    if app.get_record(given) is not None or len(given) < MIN_PREFIX_GIVEN:
        return given
    # Every id that starts with `given` sorts below this cursor and above `given` itself.
    page = app.backend.list_jobs(cursor=given + "\U0010ffff", limit=PREFIX_CANDIDATES)
    matches = [r.id for r in page if r.id.startswith(given)]
    if len(matches) > 1:
        shown = ", ".join(matches[: PREFIX_CANDIDATES - 1])
        raise UserError(
            f"{given!r} is the start of several job ids ({shown}...); give more of the id"
        )
    return matches[0] if matches else given


COMMANDS = [jobs, job, cancel, retry, queues, workers, schedules, purge]
