"""``conveyor dashboard`` (the HTTP API and dashboard) and ``conveyor run`` (worker, scheduler
and dashboard in one process: the whole system for a small app on the embedded default)."""

from __future__ import annotations

import ipaddress
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import click

from conveyor.cli.context import CliState, UserError, pass_state
from conveyor.cli.worker import configure_logging, loglevel_option
from conveyor.worker.allocator import cap_malloc_arenas

log = logging.getLogger("conveyor.cli")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--read-only", is_flag=True, help="Refuse every change (retry, cancel, purge) with 403."
    )(fn)
    fn = click.option(
        "--token",
        envvar="CONVEYOR_TOKEN",
        help="Require this token (Bearer header or the login form); default CONVEYOR_TOKEN.",
    )(fn)
    fn = click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)(fn)
    fn = click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Address to bind; anything but loopback needs a token.",
    )(fn)
    return fn


def checked_token(host: str, token: str | None, fallback: str | None) -> str | None:
    token = token or fallback
    if not token and not is_loopback(host):
        raise UserError(
            f"refusing to serve on {host} without a token: pass --token (or set "
            "CONVEYOR_TOKEN), or bind to 127.0.0.1"
        )
    return token


def serve(web: Any, host: str, port: int, loglevel: str) -> None:
    try:
        import uvicorn
    except ImportError:
        raise UserError("the dashboard needs the web extra: pip install 'conveyor[web]'") from None
    click.echo(f"conveyor dashboard on http://{host}:{port}/", err=True)
    # uvicorn stops on SIGTERM/SIGINT, then raises the signal again for the handler it found:
    # let that be a quiet one, so the caller can stop its worker and exit with status 0.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(web, host=host, port=port, log_level=loglevel.lower(), lifespan="off")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped(signum: int, frame: FrameType | None) -> None:
    log.info("signal %d: stopped serving", signum)


@click.command(short_help="Serve the HTTP API and dashboard.")
@serve_options
@loglevel_option
@pass_state
def dashboard(
    cli: CliState, host: str, port: int, token: str | None, read_only: bool, loglevel: str
) -> None:
    """Serve the HTTP API, live events, /metrics and the dashboard (uvicorn). Without a
    token it binds to loopback only."""
    app = cli.app()
    token = checked_token(host, token, app.settings.token)
    configure_logging(loglevel)
    serve(app.asgi(token=token, read_only=read_only), host, port, loglevel)


@click.command(short_help="Worker, scheduler and dashboard in one process.")
@serve_options
@click.option("-Q", "--queues", metavar="A,B", help="Queues to serve (default: all the app's).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--pool", type=click.Choice(["thread", "process", "async"]), default="thread", show_default=True
)
@loglevel_option
@pass_state
def run(
    cli: CliState,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    queues: str | None,
    concurrency: int,
    pool: str,
    loglevel: str,
) -> None:
    """Run a worker (with the periodic scheduler) and serve the dashboard, in one process,
    until SIGTERM or SIGINT: the whole system for a small app."""
    cap_malloc_arenas()  # a worker's process, as `conveyor worker`'s is
    app = cli.app(needs_tasks="run")
    token = checked_token(host, token, app.settings.token)
    names = None if queues is None else [q.strip() for q in queues.split(",") if q.strip()]
    if names is not None and not names:
        raise UserError(f"-Q {queues!r} names no queue")
    configure_logging(loglevel)
    web = app.asgi(token=token, read_only=read_only)
    worker = app.worker(queues=names, concurrency=concurrency, pool=pool)
    worker.start()
    try:
        # uvicorn owns the signals: SIGTERM/SIGINT stop the server, then the worker stops
        serve(web, host, port, loglevel)
    finally:
        log.info("stopping the worker")
        worker.stop()


COMMANDS = [dashboard, run]
