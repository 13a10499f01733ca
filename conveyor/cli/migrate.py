"""``conveyor migrate``: bring the store's tables to the layout this conveyor writes."""

from __future__ import annotations

import click

from conveyor.cli.context import CliState


@click.command(short_help="Bring the store's layout up to this conveyor's version.")
@click.pass_obj
def migrate(cli: CliState) -> None:
    """Run every step that brings the store to this conveyor's layout, also those that a
    process opening the store does not run by itself. Safe to run again."""
    app = cli.app()
    versions = app.migrate()
    where = f"namespace {app.settings.namespace!r}"
    if versions is None:
        click.echo(f"{where}: nothing to migrate (this store keeps no layout version)")
    elif versions[0] == versions[1]:
        click.echo(f"{where}: already at layout version {versions[1]}")
    elif versions[0] == 0:
        click.echo(f"{where}: created at layout version {versions[1]}")
    else:
        click.echo(f"{where}: migrated from layout version {versions[0]} to {versions[1]}")
