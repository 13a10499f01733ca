"""schemathesis against /openapi.json (bounded): no 5xx, no response outside the schema,
malformed requests refused with 4xx. The streams are read in test_sse.py instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import BaseSchema, Case

from conveyor.app import App
from tests.web.conftest import make_app


@pytest.fixture
def fuzzed_app(tmp_path: Path) -> Iterator[App]:
    app = make_app(f"sqlite:///{tmp_path}/fuzz.db", "fuzz")
    add = app.registry.get("add")
    for i in range(3):
        add.delay(i, i)
    app.registry.get("boom").delay("x").cancel()
    yield app
    app.close()


@pytest.fixture
def api_schema(fuzzed_app: App) -> BaseSchema:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app.asgi())
    return schema.exclude(path_regex="events$")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_the_api_keeps_to_its_openapi_document(case: Case) -> None:
    case.call_and_validate()
