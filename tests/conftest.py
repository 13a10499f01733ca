"""Shared fixtures. ``backend_url`` / ``backend`` run a test once per backend; the Redis and
PostgreSQL ones use throwaway servers that ``tests/servers.py`` starts on free ports (skipped
locally when the binary is missing, a failure under CI=true)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from conveyor.backends import Backend, open_backend

pytest_plugins = ["tests.servers"]

BACKENDS = ["memory", "sqlite", "redis", "postgres"]


def url_for(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The URL of a fresh store of this kind (servers come from tests/servers.py)."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db')}/jobs.db"
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        return str(server.url)
    if kind == "postgres":
        return str(request.getfixturevalue("postgres_server").url)
    if kind == "redis-cluster":
        # A plain redis:// URL of one node, as API.md promises: the backend finds the
        # Cluster by itself (the explicit redis+cluster:// form is in test_redis_cluster.py).
        cluster = request.getfixturevalue("redis_cluster")
        return f"redis://127.0.0.1:{cluster.nodes[1].port}/0"
    raise AssertionError(kind)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return url_for(request.param, request, tmp_path_factory)


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests sharing one server never see each other."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def backend(backend_url: str, namespace: str) -> Iterator[Backend]:
    b = open_backend(backend_url, namespace=namespace)
    try:
        yield b
    finally:
        b.close()
