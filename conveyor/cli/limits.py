"""``conveyor limits``: every cluster-wide limit the store knows, with its use now."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.markup import escape
from rich.table import Table

from conveyor.cli import render
from conveyor.cli.context import CliState, pass_state


@click.command(short_help="Cluster-wide limits and their use now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def limits(cli: CliState, as_json: bool) -> None:
    """Every rate and concurrency limit in the store: its numbers, and per key the jobs
    running under it and the starts within its rate's window."""
    app = cli.store_app("limits")
    found = app.limits()
    if as_json:
        click.echo(json.dumps([asdict(info) for info in found], indent=2))
        return
    if not found:
        store = escape(cli.store_name())
        render.console(stderr=True).print(f"no limits recorded in {store}")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("limit", "rate", "concurrency", "key", "running", "started"):
        numeric = column in ("concurrency", "running", "started")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for info in found:
        rate, concurrency = (
            info.rate or "—",
            "—" if info.concurrency is None else str(info.concurrency),
        )
        uses = info.keys or ()
        if not uses:
            table.add_row(escape(info.name), rate, concurrency, "", "0", "0")
        for i, use in enumerate(uses):
            head = (escape(info.name), rate, concurrency) if i == 0 else ("", "", "")
            table.add_row(*head, escape(use.key), str(use.running), str(use.started))
    render.console().print(table)
    render.store_line(cli.store_name())
