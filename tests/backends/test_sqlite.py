"""What only the SQLite backend promises: its URL, its durability settings, and several
processes sharing one file (claims, schema creation, wake-ups)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

import pytest

from conveyor.backends import open_backend
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.errors import ConfigurationError
from conveyor.job import Outcome, State
from tests.backends.helpers import LEASE, NOW, enqueue_one, make_record

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


def _claim_until_empty(url: str, namespace: str, name: str) -> list[str]:
    """In a child process: claim and finish jobs until none are left; the ids it got."""
    backend = SQLiteBackend(url, namespace=namespace)
    got: list[str] = []
    try:
        while claims := backend.claim(name, ["default"], 3, lease_seconds=LEASE, now=NOW):
            for claim in claims:
                got.append(claim.record.id)
                backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    finally:
        backend.close()
    return got


def _open(url: str, namespace: str) -> int:
    backend = SQLiteBackend(url, namespace=namespace)
    try:
        return len(backend.list_jobs())
    finally:
        backend.close()


def test_several_processes_claim_every_job_exactly_once(url: str) -> None:
    backend = SQLiteBackend(url, namespace="shared")
    jobs = backend.enqueue([make_record() for _ in range(600)])
    with ProcessPoolExecutor(4, mp_context=SPAWN) as pool:
        futures = [pool.submit(_claim_until_empty, url, "shared", f"p{i}") for i in range(4)]
        claimed = [job_id for f in futures for job_id in f.result(timeout=100)]
    assert Counter(claimed) == Counter(j.id for j in jobs)
    assert backend.queue_counts() == {"default": {State.SUCCEEDED: 600}}
    backend.close()


def test_several_processes_can_create_one_new_file_at_once(url: str) -> None:
    with ProcessPoolExecutor(4, mp_context=SPAWN) as pool:
        counts = list(pool.map(_open, [url] * 4, ["fresh"] * 4, timeout=100))
    assert counts == [0, 0, 0, 0]


def test_another_process_enqueue_wakes_wait_for_jobs(url: str) -> None:
    backend = SQLiteBackend(url, namespace="wake")
    # The claim marks where the waiter stands, so a commit made between it and the wait
    # still wakes the wait: the child may enqueue before the wait starts.
    assert backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW) == []
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                from conveyor.backends.sqlite import SQLiteBackend
                from tests.backends.helpers import make_record
                SQLiteBackend({url!r}, namespace="wake").enqueue([make_record()])
            """),
        ],
        cwd=Path(__file__).parents[2],
    )
    try:
        started = time.monotonic()
        backend.wait_for_jobs(["default"], 60.0)
        assert time.monotonic() - started < 30, "woken only by the timeout"
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert len(backend.claim("w", ["default"], 1, lease_seconds=LEASE, now=NOW)) == 1
    backend.close()


def _pragma(backend: SQLiteBackend, name: str) -> object:
    return backend._db.get().execute(f"PRAGMA {name}").fetchone()[0]


def test_synchronous_is_full_unless_normal_is_asked_for(tmp_path: Path) -> None:
    full = SQLiteBackend(f"sqlite:///{tmp_path}/a.db")
    normal = SQLiteBackend(f"sqlite:///{tmp_path}/b.db?synchronous=NORMAL")
    explicit = SQLiteBackend(f"sqlite:///{tmp_path}/c.db?synchronous=full")
    try:
        assert (_pragma(full, "synchronous"), _pragma(normal, "synchronous")) == (2, 1)
        assert _pragma(explicit, "synchronous") == 2
    finally:
        for b in (full, normal, explicit):
            b.close()


def test_the_file_is_in_wal_mode_with_a_busy_timeout(url: str, tmp_path: Path) -> None:
    backend = SQLiteBackend(url)
    try:
        assert _pragma(backend, "busy_timeout") >= 1000  # type: ignore[operator]
    finally:
        backend.close()
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("/jobs.db?synchronous=off", "synchronous"),
        ("/jobs.db?journal=wal", "unknown sqlite:// option 'journal'"),
        ("/missing/dir/jobs.db", "does not exist"),
        ("", "is a directory"),
    ],
)
def test_a_bad_url_is_a_configuration_error(tmp_path: Path, suffix: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SQLiteBackend(f"sqlite:///{tmp_path}{suffix}")


@pytest.mark.parametrize(
    "url", ["sqlite://somehost/jobs.db", "sqlite:///:memory:", "sqlite://", "sqlite:///"]
)
def test_a_url_that_names_no_file_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        SQLiteBackend(url)


@pytest.mark.parametrize("namespace", ["bad-name", "1st", "", "a b", "x;drop"])
def test_a_namespace_that_cannot_prefix_a_table_is_a_configuration_error(
    url: str, namespace: str
) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        SQLiteBackend(url, namespace=namespace)


def test_a_relative_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    backend = open_backend("sqlite:///rel/jobs.db")
    try:
        enqueue_one(backend)
        assert (tmp_path / "rel" / "jobs.db").is_file()
    finally:
        backend.close()


def test_namespaces_share_one_file_without_seeing_each_other(url: str) -> None:
    shop, blog = SQLiteBackend(url, namespace="shop"), SQLiteBackend(url, namespace="blog")
    try:
        job = enqueue_one(shop)
        assert blog.get(job.id) is None and blog.list_jobs() == []
        assert [r.id for r in shop.list_jobs()] == [job.id]
    finally:
        shop.close()
        blog.close()


def test_close_closes_the_connections_of_every_thread(url: str) -> None:
    backend = SQLiteBackend(url)
    conns: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: conns.append(backend._db.get()))
    thread.start()
    thread.join()
    backend.close()
    with pytest.raises(sqlite3.ProgrammingError):
        conns[0].execute("SELECT 1")


def test_the_sql_files_ship_inside_the_package() -> None:
    package = resources.files("conveyor.backends.sqlite")
    assert package.joinpath("schema.sql").is_file()
    assert package.joinpath("queries.sql").is_file()
