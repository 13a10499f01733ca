"""Fixtures of the tests that run real worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "redis"])
def durable(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> Iterator[tuple[str, str]]:
    """(URL, namespace) of a store that several processes share, once per durable backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/jobs.db", "conveyor"
    else:
        yield str(request.getfixturevalue("redis_server").url), namespace
