"""The queue sizes on SQLite (sizes.sql): kept by every insert and delete of a job, and
computed once for a file made before they existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conveyor.backends import open_backend
from conveyor.backends.sqlite.store import SCHEMA_VERSION
from conveyor.backends.sqlite.upgrade import statements
from conveyor.job import Outcome, State
from tests.backends.helpers import LEASE, NOW, make_record


def _sizes(path: Path, namespace: str = "conveyor") -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute(f"SELECT queue, n FROM {namespace}_queue_sizes"))
    finally:
        conn.close()


def test_a_file_from_before_queue_sizes_gets_them_counted_from_its_jobs(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    backend = open_backend(url, namespace="conveyor")
    backend.enqueue([make_record(queue="a") for _ in range(3)] + [make_record(queue="b")])
    [claim] = backend.claim("w1", ["b"], 1, lease_seconds=LEASE, now=NOW)
    backend.finish(claim.record.id, claim.token, Outcome(State.SUCCEEDED), now=NOW)
    backend.close()
    # back to the previous release's layout: no sizes table, no triggers, version 2
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript(
        "DROP TRIGGER conveyor_jobs_size_insert; DROP TRIGGER conveyor_jobs_size_delete;"
        "DROP TABLE conveyor_queue_sizes; PRAGMA user_version = 2;"
    )
    conn.close()
    again = open_backend(url, namespace="conveyor")
    try:
        assert again.queue_counts() == {
            "a": {State.QUEUED: 3},
            "b": {State.SUCCEEDED: 1},
        }
        again.enqueue([make_record(queue="b")])
        assert again.queue_counts()["b"] == {State.QUEUED: 1, State.SUCCEEDED: 1}
    finally:
        again.close()
    assert _sizes(tmp_path / "old.db") == {"a": 3, "b": 2}
    conn = sqlite3.connect(tmp_path / "old.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_opening_a_file_again_does_not_count_its_jobs_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    first = open_backend(url, namespace="conveyor")
    first.enqueue([make_record() for _ in range(2)])
    second = open_backend(url, namespace="conveyor")
    try:
        assert _sizes(tmp_path / "jobs.db") == {"default": 2}
        assert second.queue_counts() == {"default": {State.QUEUED: 2}}
    finally:
        first.close()
        second.close()


def test_purges_take_jobs_off_the_sizes_and_an_empty_queue_is_not_listed(
    tmp_path: Path,
) -> None:
    backend = open_backend(f"sqlite:///{tmp_path}/jobs.db", namespace="conveyor")
    try:
        backend.enqueue([make_record(queue="q") for _ in range(2)])
        [claim] = backend.claim("w1", ["q"], 1, lease_seconds=LEASE, now=NOW)
        backend.finish(claim.record.id, claim.token, Outcome(State.SUCCEEDED), now=NOW)
        assert backend.purge_queue("q") == 1
        assert backend.queue_counts() == {"q": {State.SUCCEEDED: 1}}
        backend.sweep(now=NOW + 10 * 86400 * 365)
        assert backend.queue_counts() == {}
        assert _sizes(tmp_path / "jobs.db") == {"q": 0}
    finally:
        backend.close()


def test_a_script_is_split_into_statements_with_trigger_bodies_whole() -> None:
    script = """
    -- a comment
    CREATE TABLE t (a);

    CREATE TRIGGER tr AFTER INSERT ON t
    BEGIN
        INSERT INTO t (a) VALUES (1);
        DELETE FROM t WHERE a = 2;
    END;
    """
    out = list(statements(script))
    assert len(out) == 2
    assert out[1].strip().startswith("CREATE TRIGGER") and out[1].rstrip().endswith("END;")
