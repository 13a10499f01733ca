"""Fixtures for the command line: a SQLite file in tmp_path, an app module written there
(importable with -A, as a user's tasks.py is), and ``run`` to invoke ``conveyor``."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result

from conveyor.app import App
from conveyor.cli import cli

APP_SOURCE = """
import time
from datetime import timedelta

import conveyor

app = conveyor.App({url!r})


@app.task
def add(x, y):
    return x + y


@app.task
def boom(message):
    raise ValueError(message)


@app.task(queue="reports")
def report(steps):
    for step in range(1, steps + 1):
        conveyor.progress(100 * step / steps, f"step {{step}} of {{steps}}", step=step)
        time.sleep(0.05)
    return {{"steps": steps}}


@app.periodic(every=timedelta(hours=1))
def hourly():
    return "tick"


@app.periodic(every=1, name="every_second")
def every_second():
    return "tick"
"""


@dataclass
class AppModule:
    """A user's app module in tmp_path: ``spec`` is what -A takes."""

    name: str
    path: Path
    url: str
    module: ModuleType | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}:app"

    @property
    def app(self) -> App:
        if self.module is None:
            self.module = importlib.import_module(self.name)
        app = self.module.app
        assert isinstance(app, App)
        return app

    def task(self, short: str) -> str:
        return f"{self.name}.{short}"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


@pytest.fixture
def app_module(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppModule]:
    # A fresh module name per test: sys.modules would otherwise hand back an earlier test's.
    name = f"cliapp_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP_SOURCE.format(url=db_url)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # -A adds the cwd too
    importlib.invalidate_caches()
    monkeypatch.setenv("CONVEYOR_URL", db_url)
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    store = App(db_url)  # the store exists, as a user's does once anything has run
    assert store.backend.ping()
    store.close()
    found = AppModule(name, tmp_path, db_url)
    yield found
    if found.module is not None or name in sys.modules:
        found.app.close()
    sys.modules.pop(name, None)


@pytest.fixture
def inspector(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """An app on the same file, for the test to set jobs up and look at them."""
    monkeypatch.setenv("CONVEYOR_URL", db_url)
    app = App(db_url)
    yield app
    app.close()


def run(*args: str) -> Result:
    """``conveyor ARGS...`` in this process, stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_user_error(result: Result, *fragments: str) -> None:
    """One line on stderr, starting with ``error:``, exit status 2, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
