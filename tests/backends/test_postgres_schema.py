"""Layout versions on PostgreSQL: a newer conveyor migrates an older store (by itself when
every step is safe, else with ``conveyor migrate``), an older conveyor refuses a newer store
with one line. The steps here are made up for the test; the mechanism is the real one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from conveyor.backends.postgres import PostgresBackend, schema
from conveyor.backends.postgres.schema import SCHEMA_VERSION, Step
from conveyor.errors import ConfigurationError
from tests.backends.helpers import make_record
from tests.cli.conftest import assert_user_error, run
from tests.servers import PostgresServer

pytestmark = pytest.mark.slow

NEXT = SCHEMA_VERSION + 1
ADD_COLUMN = "ALTER TABLE {ns}_jobs ADD COLUMN note text"


@pytest.fixture
def ns(postgres_server: PostgresServer) -> str:
    """A namespace at today's layout, with one job in it."""
    name = f"t{uuid.uuid4().hex[:12]}"
    backend = PostgresBackend(postgres_server.url, namespace=name)
    backend.enqueue([make_record()])
    backend.close()
    return name


@pytest.fixture
def next_layout(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Step]]:
    """This conveyor as if it were the next one: one step from today's layout to the next."""
    steps: list[Step] = []
    real_sql_file = schema.sql_file
    monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setattr(schema, "STEPS", steps)
    monkeypatch.setattr(
        schema, "sql_file", lambda name: ADD_COLUMN if name == "next.sql" else real_sql_file(name)
    )
    yield steps


def columns(url: str, ns: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
            [f"{ns}_jobs"],
        )
        return {row[0] for row in rows}


def version(url: str, ns: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute(f"SELECT version FROM {ns}_schema").fetchone()[0])  # type: ignore[index]


def test_a_safe_step_runs_by_itself_when_the_store_is_opened(
    postgres_server: PostgresServer, ns: str, next_layout: list[Step]
) -> None:
    next_layout.append(Step(NEXT, "next.sql", safe=True))
    backend = PostgresBackend(postgres_server.url, namespace=ns)
    try:
        assert len(backend.list_jobs()) == 1  # nothing lost on the way
    finally:
        backend.close()
    assert "note" in columns(postgres_server.url, ns)
    assert version(postgres_server.url, ns) == NEXT


def test_a_step_that_is_not_safe_waits_for_conveyor_migrate(
    postgres_server: PostgresServer,
    ns: str,
    next_layout: list[Step],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    next_layout.append(Step(NEXT, "next.sql", safe=False))
    with pytest.raises(ConfigurationError) as refused:
        PostgresBackend(postgres_server.url, namespace=ns)
    assert "\n" not in str(refused.value) and "conveyor migrate" in str(refused.value)
    assert version(postgres_server.url, ns) == SCHEMA_VERSION

    monkeypatch.setenv("CONVEYOR_URL", postgres_server.url)
    monkeypatch.setenv("CONVEYOR_NAMESPACE", ns)
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    result = run("migrate")
    assert result.exit_code == 0, result.output
    assert f"from layout version {SCHEMA_VERSION} to {NEXT}" in result.stdout
    assert "note" in columns(postgres_server.url, ns)
    again = run("migrate")
    assert f"already at layout version {NEXT}" in again.stdout
    PostgresBackend(postgres_server.url, namespace=ns).close()  # opens without complaint


def test_conveyor_migrate_refuses_a_newer_store_in_one_line(
    postgres_server: PostgresServer, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        conn.execute(f"UPDATE {ns}_schema SET version = {NEXT}")
    monkeypatch.setenv("CONVEYOR_URL", postgres_server.url)
    monkeypatch.setenv("CONVEYOR_NAMESPACE", ns)
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    assert_user_error(run("migrate"), f"layout version {NEXT}", "upgrade conveyor")


def test_a_store_of_layout_1_gets_the_change_feed_when_opened(
    postgres_server: PostgresServer, ns: str
) -> None:
    with psycopg.connect(postgres_server.url) as conn:  # back to layout 1, one job kept
        conn.execute(f"DROP TABLE {ns}_events, {ns}_counters")
        conn.execute(f"DROP FUNCTION {ns}_job_event() CASCADE")
        for index in ("by_task", "by_queue", "by_state"):
            conn.execute(f"DROP INDEX {ns}_jobs_{index}")
        conn.execute(f"UPDATE {ns}_schema SET version = 1")
    backend = PostgresBackend(postgres_server.url, namespace=ns)
    try:
        start = backend.last_event_id()
        backend.enqueue([make_record(task="t.after")])
        assert [e.task for e in backend.read_events(start)] == ["t.after"]
        assert len(backend.list_jobs(task="t.after")) == 1
    finally:
        backend.close()
    assert version(postgres_server.url, ns) == SCHEMA_VERSION


def test_a_store_of_layout_2_gets_listing_indexes_that_leave_out_running_jobs(
    postgres_server: PostgresServer, ns: str
) -> None:
    with psycopg.connect(postgres_server.url) as conn:  # back to layout 2, one job kept
        for index, column in (("by_task", "task"), ("by_queue", "queue")):
            conn.execute(f"DROP INDEX {ns}_jobs_{index}")
            conn.execute(f"CREATE INDEX {ns}_jobs_{index} ON {ns}_jobs ({column}, id)")
        conn.execute(f"UPDATE {ns}_schema SET version = 2")
    backend = PostgresBackend(postgres_server.url, namespace=ns)
    try:
        backend.enqueue([make_record(task="t.after")])
        claimed = backend.claim("w", ["default"], 2, lease_seconds=30.0, now=1_700_000_000.0)
        assert len(claimed) == 2
        assert len(backend.list_jobs(task="t.after")) == 1
        assert len(backend.list_jobs(queue="default")) == 2  # running: from their own index
    finally:
        backend.close()
    assert version(postgres_server.url, ns) == SCHEMA_VERSION
    with psycopg.connect(postgres_server.url) as conn:
        definitions = [
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname IN (%s, %s)",
                [f"{ns}_jobs_by_task", f"{ns}_jobs_by_queue"],
            )
        ]
    assert len(definitions) == 2 and all("<> 'running'" in d for d in definitions)
