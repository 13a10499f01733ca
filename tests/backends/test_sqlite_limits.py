"""SQLite files made before limits existed: opening one adds what limits need."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conveyor.backends import open_backend
from tests.backends.helpers import LEASE, NOW, make_record


def test_a_file_from_before_limits_gets_the_held_column_and_keeps_its_jobs(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    backend = open_backend(url, namespace="conveyor")
    [job] = backend.enqueue([make_record()])
    backend.close()
    # back to the old layout: no held column, the old ready index
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript(
        "DROP INDEX conveyor_jobs_to_claim; DROP INDEX conveyor_jobs_held;"
        "ALTER TABLE conveyor_jobs DROP COLUMN held;"
        "CREATE INDEX conveyor_jobs_queued ON conveyor_jobs (queue, priority DESC, ready_at, id)"
        " WHERE state = 'queued';"
    )
    conn.close()
    again = open_backend(url, namespace="conveyor")
    try:
        claims = again.claim("w1", ["default"], 5, lease_seconds=LEASE, now=NOW)
        assert [c.record.id for c in claims] == [job.id]
    finally:
        again.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "conveyor_jobs_to_claim" in indexes and "conveyor_jobs_queued" not in indexes
    assert "conveyor_jobs_ready" not in indexes
