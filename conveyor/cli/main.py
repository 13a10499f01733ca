"""The ``conveyor`` group: ``-A`` names the app, every ConveyorError a command raises becomes
one line on stderr and exit status 2."""

from __future__ import annotations

from typing import Any

import click

from conveyor import __version__
from conveyor.cli import demo, enqueue, jobs, limits, migrate, worker
from conveyor.cli.context import CliState, UserError, show_warnings
from conveyor.cli.web import COMMANDS as WEB_COMMANDS
from conveyor.errors import ConveyorError


class ConveyorGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            # A user's mistake (unknown job id, bad option value, unreachable backend...):
            # the message already says what is wrong and how to fix it; no traceback.
            raise UserError(str(exc)) from None


@click.group(cls=ConveyorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-A",
    "--app",
    "app_spec",
    envvar="CONVEYOR_APP",
    metavar="MODULE:ATTR",
    help="The app, e.g. tasks:app (default: CONVEYOR_APP; without it, conveyor.App() on "
    "CONVEYOR_URL or sqlite:///conveyor.db, enough to inspect jobs).",
)
@click.version_option(__version__, "--version", prog_name="conveyor")
@click.pass_context
def cli(ctx: click.Context, app_spec: str | None) -> None:
    """conveyor: durable background jobs. One SQLite file by default, Redis or PostgreSQL
    when you outgrow it."""
    ctx.obj = CliState(app_spec)
    show_warnings(ctx)


for command in (*worker.COMMANDS, enqueue.enqueue, *jobs.COMMANDS, limits.limits, demo.demo):
    cli.add_command(command)
for command in (migrate.migrate, *WEB_COMMANDS):
    cli.add_command(command)


def main() -> None:
    """The console script's entry point."""
    cli.main(prog_name="conveyor")
