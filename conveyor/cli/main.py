"""The ``conveyor`` group: ``-A`` names the app, every ConveyorError a command raises becomes
one line on stderr and exit status 2."""

from __future__ import annotations

import importlib
from typing import Any

import click

from conveyor import __version__
from conveyor.cli.context import CliState, UserError, show_warnings
from conveyor.errors import ConveyorError

#: each command's module in conveyor.cli (where it is the attribute of the same name),
#: imported only when that command runs or --help lists them: a worker process then loads
#: neither Rich nor the inspection renderers, about 3 MB of its RSS (issue 15)
MODULES = {
    "worker": "worker",
    "scheduler": "worker",
    "enqueue": "enqueue",
    **dict.fromkeys(
        ("jobs", "job", "cancel", "retry", "queues", "workers", "schedules", "purge"), "jobs"
    ),
    "limits": "limits",
    "demo": "demo",
    "migrate": "migrate",
    "dashboard": "web",
    "run": "web",
}


class ConveyorGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = MODULES.get(cmd_name)
        if module is None:
            return super().get_command(ctx, cmd_name)
        command = getattr(importlib.import_module(f"conveyor.cli.{module}"), cmd_name)
        assert isinstance(command, click.Command)
        return command

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


def main() -> None:
    """The console script's entry point."""
    cli.main(prog_name="conveyor")
