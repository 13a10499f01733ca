"""Fixtures of the tests that run real worker processes (``tests.worker.fault_app``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from tests.servers import PostgresServer, RedisServer


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def durable(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> Iterator[tuple[str, str]]:
    """A durable store for worker processes: its URL and namespace."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/jobs.db", "conveyor"
    else:
        server = request.getfixturevalue(f"{request.param}_server")
        yield str(server.url), namespace


@pytest.fixture
def client(durable: tuple[str, str]) -> Iterator[conveyor.App]:
    """An app on the ``durable`` store that knows fault_app's task names."""
    from tests.worker import fault_app

    url, ns = durable
    app = conveyor.App(url, namespace=ns)
    app.registry = fault_app.app.registry  # the same task names the workers know
    yield app
    app.close()


@pytest.fixture(params=["redis", "postgres"])
def server(request: pytest.FixtureRequest) -> RedisServer | PostgresServer:
    """The session's server of each networked kind; tests keep apart by namespace."""
    found: RedisServer | PostgresServer = request.getfixturevalue(f"{request.param}_server")
    return found


@pytest.fixture(params=["redis", "postgres"])
def fresh_server(request: pytest.FixtureRequest) -> RedisServer | PostgresServer:
    """A server of each networked kind of the test's own, for tests that freeze or kill it."""
    found: RedisServer | PostgresServer = request.getfixturevalue(f"fresh_{request.param}_server")
    return found
