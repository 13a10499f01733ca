"""The backend tests run once more than the rest of the suite: on a Redis Cluster too.

``backend_url`` here overrides the one in tests/conftest.py for tests/backends/ only, so the
conformance suite checks the Cluster while the other tests keep to one Redis server.
"""

from __future__ import annotations

import pytest

from tests.conftest import url_for

BACKENDS = ["memory", "sqlite", "redis", "redis-cluster", "postgres"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return url_for(request.param, request, tmp_path_factory)
