"""The backend tests run once more than the rest of the suite: on a Redis Cluster too.

``backend_url`` here overrides the one in tests/conftest.py for tests/backends/ only, so the
conformance suite checks the Cluster while the other tests keep to one Redis server.
"""

from __future__ import annotations

import pytest

BACKENDS = ["memory", "sqlite", "redis", "redis-cluster"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db')}/jobs.db"
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        return str(server.url)
    if kind == "redis-cluster":
        # A plain redis:// URL of one node, as API.md promises: the backend finds the
        # Cluster by itself (the explicit redis+cluster:// form is in test_redis_cluster.py).
        cluster = request.getfixturevalue("redis_cluster")
        return f"redis://127.0.0.1:{cluster.nodes[1].port}/0"
    raise AssertionError(kind)
