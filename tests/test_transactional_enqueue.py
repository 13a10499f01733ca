"""Transactional enqueue (API.md): ``apply_async(..., connection=conn)`` and
``enqueue_many(..., connection=conn)`` write the job in the caller's own transaction on
PostgreSQL and SQLite; rolled back, there is no job; committed, a worker runs it. Stores
without such transactions refuse ``connection=``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from tests.servers import PostgresServer

pytestmark = pytest.mark.slow


def _add(x: int, y: int) -> int:
    return x + y


@pytest.fixture(params=["postgres", "sqlite"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> Iterator[tuple[conveyor.App, Any]]:
    """An app, and a function that opens the caller's own connection to its database."""
    if request.param == "postgres":
        import psycopg

        server: PostgresServer = request.getfixturevalue("postgres_server")
        app = conveyor.App(server.url, namespace=namespace)

        def connect() -> Any:
            conn = psycopg.connect(server.url)
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id integer)")
            conn.commit()
            return conn
    else:
        path = tmp_path / "jobs.db"
        app = conveyor.App(f"sqlite:///{path}", namespace=namespace)

        def connect() -> Any:
            conn = sqlite3.connect(path)
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id integer)")
            conn.commit()
            return conn

    app.backend  # noqa: B018 - opens the store, so its tables exist before the caller's writes
    try:
        yield app, connect
    finally:
        app.close()


def test_a_rolled_back_transaction_leaves_no_job(store: tuple[conveyor.App, Any]) -> None:
    app, connect = store
    add = app.task(name="tx.add")(_add)
    conn = connect()
    try:
        conn.execute("INSERT INTO orders VALUES (1)")
        job = add.apply_async((1, 2), connection=conn)
        jobs = app.enqueue_many([add.s(i, i) for i in range(3)], connection=conn)
        conn.rollback()
    finally:
        conn.close()
    assert app.backend.get(job.id) is None
    assert all(app.backend.get(j.id) is None for j in jobs)
    assert app.backend.list_jobs() == []


def test_a_committed_transaction_runs_its_jobs(store: tuple[conveyor.App, Any]) -> None:
    app, connect = store
    add = app.task(name="tx.add")(_add)
    with app.worker(concurrency=2):
        conn = connect()
        try:
            conn.execute("INSERT INTO orders VALUES (1)")
            job = add.apply_async((1, 2), connection=conn)
            jobs = app.enqueue_many([add.s(i, i) for i in range(3)], connection=conn)
            assert app.backend.get(job.id) is None  # not before the commit
            conn.commit()
        finally:
            conn.close()
        assert job.result(timeout=30) == 3
        assert [j.result(timeout=30) for j in jobs] == [0, 2, 4]


def test_a_key_in_the_transaction_returns_the_job_already_stored(
    store: tuple[conveyor.App, Any],
) -> None:
    app, connect = store
    add = app.task(name="tx.add")(_add)
    first = add.apply_async((1, 1), key="order-1")
    conn = connect()
    try:
        again = add.apply_async((1, 1), key="order-1", connection=conn)
        conn.commit()
    finally:
        conn.close()
    assert again.id == first.id
    assert len(app.backend.list_jobs()) == 1


def test_a_connection_of_another_kind_is_a_type_error(store: tuple[conveyor.App, Any]) -> None:
    app, _ = store
    add = app.task(name="tx.add")(_add)
    with pytest.raises(TypeError, match="connection="):
        add.apply_async((1, 2), connection=object())


def test_a_sqlite_connection_to_another_file_is_refused(tmp_path: Path) -> None:
    app = conveyor.App(f"sqlite:///{tmp_path}/jobs.db")
    app.task(name="tx.add")(_add)
    other = sqlite3.connect(tmp_path / "other.db")
    try:
        with pytest.raises(conveyor.ConfigurationError, match="not on the app's database"):
            app.enqueue_many([conveyor.Signature("tx.add", (1, 2))], connection=other)
    finally:
        other.close()
        app.close()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_stores_without_transactions_refuse_connection(
    kind: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    url = "memory://" if kind == "memory" else request.getfixturevalue("redis_server").url
    app = conveyor.App(url, namespace=namespace)
    add = app.task(name="tx.add")(_add)
    theirs = sqlite3.connect(":memory:")
    try:
        with pytest.raises(conveyor.ConfigurationError, match="PostgreSQL or SQLite"):
            add.apply_async((1, 2), connection=theirs)
        assert app.backend.list_jobs() == []
    finally:
        theirs.close()
        app.close()
