"""schemathesis against /openapi.json (bounded): no 5xx, no response outside the document,
malformed requests refused with 4xx. The streams are read in test_sse.py instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode

from tests.web.conftest import TOKEN, make_app

pytestmark = pytest.mark.slow

EXAMPLES = 30
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_to_its_openapi_document(tmp_path: Path, mode: GenerationMode) -> None:
    app = make_app(f"sqlite:///{tmp_path}/fuzz.db", "fuzz")
    add = app.registry.get("add")
    for i in range(3):
        add.delay(i, i)
    app.registry.get("boom").delay("x").cancel()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app.asgi(token=TOKEN), headers=AUTH)
    checked = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path.endswith("events"):
                continue

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,  # the same cases on every run: CI is not a lottery
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Case) -> None:
                case.call_and_validate(headers=AUTH)

            try:
                check()
            except Unsatisfiable:  # nothing to get wrong: a route without parameters or body
                assert mode is GenerationMode.NEGATIVE
            checked.append(operation.label)
    finally:
        app.close()
    assert len(checked) >= 12, checked
