"""``conveyor limits``: the limits a store knows and their use, as a table and as JSON."""

from __future__ import annotations

import json

from tests.cli.conftest import AppModule, run


def test_limits_lists_each_limit_with_its_numbers_and_use(app_module: AppModule) -> None:
    app = app_module.app
    assert app.backend.ping()  # an open store takes a declared limit at once
    app.limit("bedrock", rate="50/m", concurrency=4)
    app.limit("mail", concurrency=2)
    table = run("limits")
    assert table.exit_code == 0, table.output
    assert "bedrock" in table.stdout and "50/m" in table.stdout and "mail" in table.stdout
    listed = {item["name"]: item for item in json.loads(run("limits", "--json").stdout)}
    assert listed["bedrock"]["concurrency"] == 4 and listed["bedrock"]["rate"] == "50/m"
    assert listed["mail"]["rate"] is None


def test_limits_says_when_the_store_has_none(app_module: AppModule) -> None:
    result = run("limits")
    assert result.exit_code == 0, result.output
    assert "no limits recorded" in result.stderr
