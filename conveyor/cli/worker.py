"""``conveyor worker`` and ``conveyor scheduler``: the long-running processes, logging plain
lines (or JSON), stopping gracefully on SIGTERM or SIGINT with exit status 0."""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from types import FrameType

import click

from conveyor.cli.context import HANDLER_NAME, CliState, UserError, pass_state
from conveyor.worker.allocator import cap_malloc_arenas, trim_malloc
from conveyor.worker.joblog import JsonFormatter
from conveyor.worker.scheduler import Scheduler

LEVELS = ["debug", "info", "warning", "error"]

log = logging.getLogger("conveyor.cli")

loglevel_option = click.option(
    "--log-level",
    "--loglevel",
    "loglevel",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="How much to log: info shows one line per finished job attempt, debug adds "
    "every failed attempt's traceback.",
)
logformat_option = click.option(
    "--log-format",
    "logformat",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for a terminal; json: one object per line, for log collectors.",
)


TEXT_FORMAT = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


class _Handoff(logging.Handler):
    """Hands each record, unformatted, to a thread of its own that formats and writes it.

    Why: a worker logs every job from its finisher thread, and a write to the terminal
    releases the GIL; getting it back behind busy pool threads can cost milliseconds, which
    halved a busy worker's jobs/s. Putting a record on a queue costs a microsecond. (Not
    logging.handlers' QueueHandler: that module imports pickle, ~0.5 MB of a worker's RSS.)"""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self._handler = handler
        # formatted by the writing thread; conveyor's log args are immutable
        self._records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="conveyor-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._records.put(record)

    def _write(self) -> None:
        while (record := self._records.get()) is not None:
            self._handler.handle(record)

    def close(self) -> None:
        """Write what is queued, then stop the writing thread."""
        if self._writer.is_alive():
            self._records.put(None)
            self._writer.join()
        super().close()


def configure_logging(level: str, log_format: str = "text") -> None:
    """conveyor's loggers to stderr, as text for a terminal or JSON lines, written from a
    thread of their own (stopped, and so flushed, when the command ends)."""
    handler = logging.StreamHandler(sys.stderr)
    # Plain lines, not Rich's: a busy worker logs thousands of jobs a second, and laying out
    # each record as a Rich table cost more than running the job.
    handler.setFormatter(JsonFormatter() if log_format == "json" else TEXT_FORMAT)
    handoff = _Handoff(handler)
    handoff.set_name(HANDLER_NAME)
    # conveyor's own loggers only: the user's logging setup, if any, stays as it is.
    logger = logging.getLogger("conveyor")
    logger.handlers[:] = [h for h in logger.handlers if h.get_name() != HANDLER_NAME]
    logger.addHandler(handoff)
    logger.setLevel(level.upper())
    logger.propagate = False
    click.get_current_context().call_on_close(handoff.close)


@click.command(short_help="Run a worker until SIGTERM or SIGINT.")
@click.option("-Q", "--queues", metavar="A,B", help="Queues to serve (default: all the app's).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--pool",
    type=click.Choice(["thread", "process", "async"]),
    default="thread",
    show_default=True,
    help="Where jobs run: threads, child processes, or one asyncio event loop.",
)
@click.option("--no-schedule", is_flag=True, help="Do not run the periodic scheduler here.")
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="How long a lost worker's jobs wait before they return to the queue.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM, how long running jobs may take before they are handed back.",
)
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), help="Process pool only.")
@click.option(
    "--max-memory-per-child", type=click.FloatRange(min=1), metavar="MB", help="Process pool only."
)
@click.option(
    "--django",
    "django_backend",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ALIAS]",
    help="Serve the Django project of DJANGO_SETTINGS_MODULE (its ConveyorBackend's tasks).",
)
@loglevel_option
@logformat_option
@pass_state
def worker(
    cli: CliState,
    queues: str | None,
    concurrency: int,
    pool: str,
    no_schedule: bool,
    lease_seconds: float,
    shutdown_timeout: float,
    max_tasks_per_child: int | None,
    max_memory_per_child: float | None,
    django_backend: str | None,
    loglevel: str,
    logformat: str,
) -> None:
    """Run a worker until SIGTERM or SIGINT; running jobs finish first (a second signal hands
    them back at once). It logs one line per finished attempt and per retry scheduled."""
    cap_malloc_arenas()  # before the app's imports and the pool's threads allocate
    names = None if queues is None else [q.strip() for q in queues.split(",") if q.strip()]
    if django_backend is not None:
        from conveyor.integrations.django.running import worker_app

        try:
            app, django_queues = worker_app(django_backend or None)
        except (RuntimeError, ImportError) as exc:
            raise UserError(f"--django: {exc}") from None
        names = django_queues if names is None else names
    else:
        app = cli.app(needs_tasks="worker")
    if names is not None and not names:
        raise UserError(f"-Q {queues!r} names no queue")
    configure_logging(loglevel, logformat)
    w = app.worker(
        queues=names,
        concurrency=concurrency,
        pool=pool,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        lease_seconds=lease_seconds,
        shutdown_timeout=shutdown_timeout,
        schedule=not no_schedule,
    )
    tasks = app.registry.names()
    log.info("app %s: %d task(s): %s", app.settings.url, len(tasks), ", ".join(tasks) or "none")
    trim_malloc()  # the app is loaded: what its imports freed goes back before the threads run
    w.run()


@click.command()
@loglevel_option
@logformat_option
@pass_state
def scheduler(cli: CliState, loglevel: str, logformat: str) -> None:
    """Run only the periodic scheduler, until SIGTERM or SIGINT. Workers run one each by
    default; any number may run, each due time is still enqueued once."""
    app = cli.app(needs_tasks="scheduler")
    specs = app.registry.periodic
    if not specs:
        raise UserError(f"the app {cli.app_spec} has no periodic tasks to schedule")
    configure_logging(loglevel, logformat)
    loop = Scheduler(app.backend, specs, app.periodic_record)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping the scheduler", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for spec in specs:
            log.info("periodic %s: %s", spec.task_name, spec.schedule.describe())
        # Housekeeping and the first pass here, not on the loop's thread: they write, so a
        # store this process cannot write to (read-only, full...) is the command's one-line
        # error, exit status 2, rather than a loop of retries.
        app.backend.sweep(now=time.time())
        loop.tick()
        # The loop runs on its own thread so the main thread stays free to take signals.
        thread = threading.Thread(target=loop.run, args=(stop,), name="conveyor-scheduler")
        thread.start()
        while not stop.wait(0.5):
            if not thread.is_alive():
                break
        stop.set()
        thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("scheduler stopped")


COMMANDS = [worker, scheduler]
