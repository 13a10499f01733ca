"""What the pool tests share: an app on a real backend that the process pool's children can
import, and bounded waiting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import conveyor
from tests.worker.apps import pool_tasks

BACKENDS = ["sqlite", "redis", "postgres"]


@contextmanager
def pool_app(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[conveyor.App]:
    """``pool_tasks.make_app`` on SQLite, Redis or PostgreSQL, installed as
    ``pool_tasks.app``."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/jobs.db"
    else:
        url = request.getfixturevalue(f"{kind}_server").url
    app = pool_tasks.make_app(url, namespace=f"t{uuid.uuid4().hex[:12]}")
    monkeypatch.setattr(pool_tasks, "app", app)
    try:
        yield app
    finally:
        app.close()


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        time.sleep(0.02)


def process_exists(pid: int) -> bool:
    try:  # read once: a process reaped between two reads has no /proc entry the second time
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split()[2] != "Z"  # a zombie has stopped
