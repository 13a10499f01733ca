"""What only the SQLite backend promises: its URL, its durability settings, and several
processes sharing one file (claims, schema creation, wake-ups)."""

from __future__ import annotations

import multiprocessing
import os
import queue
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from conveyor.backends import open_backend
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.errors import ConfigurationError
from conveyor.job import ErrorInfo, Outcome, Progress, State
from tests.backends.helpers import LEASE, NOW, enqueue_one, make_record

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


def _claim_until_empty(url: str, name: str, gate: Barrier, out: Queue[list[str]]) -> None:
    """In a child process: claim and finish jobs until none are left; report the ids."""
    backend = SQLiteBackend(url, namespace="shared")
    got: list[str] = []
    gate.wait(60)  # everyone starts claiming at once
    while claims := backend.claim(name, ["default"], 3, lease_seconds=LEASE, now=NOW):
        for claim in claims:
            got.append(claim.record.id)
            backend.finish(claim.record.id, claim.token, Outcome.succeeded(b"1"), now=NOW)
    backend.close()
    out.put(got)


def _open(url: str, name: str, gate: Barrier, out: Queue[list[str]]) -> None:
    gate.wait(60)  # everyone opens the new file at once
    backend = SQLiteBackend(url, namespace="fresh")
    out.put([r.id for r in backend.list_jobs()])
    backend.close()


def _in_processes(target: Callable[..., None], url: str, n: int = 4) -> list[list[str]]:
    gate, out = SPAWN.Barrier(n), SPAWN.Queue()
    children = [SPAWN.Process(target=target, args=(url, f"p{i}", gate, out)) for i in range(n)]
    for child in children:
        child.start()
    results: list[list[str]] = []
    deadline = time.monotonic() + 100
    try:
        while len(results) < n and time.monotonic() < deadline:
            try:
                results.append(out.get(timeout=0.2))
            except queue.Empty:
                if not any(child.is_alive() for child in children) and out.empty():
                    break  # one died without reporting: its exit code says so below
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
                child.join()
    assert [child.exitcode for child in children] == [0] * n
    return results


def test_several_processes_claim_every_job_exactly_once(url: str) -> None:
    backend = SQLiteBackend(url, namespace="shared")
    jobs = backend.enqueue([make_record() for _ in range(600)])
    claimed = [job_id for got in _in_processes(_claim_until_empty, url) for job_id in got]
    assert Counter(claimed) == Counter(j.id for j in jobs)
    assert backend.queue_counts() == {"default": {State.SUCCEEDED: 600}}
    backend.close()


def test_several_processes_can_create_one_new_file_at_once(url: str) -> None:
    assert _in_processes(_open, url) == [[], [], [], []]


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


def _pragma(backend: SQLiteBackend, name: str) -> int:
    return int(backend._db.get().execute(f"PRAGMA {name}").fetchone()[0])


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
        assert _pragma(backend, "busy_timeout") >= 1000
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


def _connection_of_a_thread(
    backend: SQLiteBackend, *, until: threading.Event
) -> tuple[sqlite3.Connection, threading.Thread]:
    conns: list[sqlite3.Connection] = []
    opened = threading.Event()

    def use() -> None:
        conns.append(backend._db.get())
        opened.set()
        until.wait(30)

    thread = threading.Thread(target=use, daemon=True)
    thread.start()
    assert opened.wait(30)
    return conns[0], thread


def test_close_closes_the_connections_of_every_thread(url: str) -> None:
    backend, stop = SQLiteBackend(url), threading.Event()
    mine, (theirs, thread) = backend._db.get(), _connection_of_a_thread(backend, until=stop)
    backend.close()
    stop.set()
    thread.join(30)
    for conn in (mine, theirs):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


def test_a_thread_that_ends_closes_its_connection(url: str) -> None:
    backend, stop = SQLiteBackend(url), threading.Event()
    conn, thread = _connection_of_a_thread(backend, until=stop)
    conn.execute("SELECT 1")
    stop.set()
    # Wait for the thread to end before touching its connection again: using a connection
    # while its ending thread closes it is a use-after-free inside sqlite3 (a segfault).
    thread.join(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the connection of an ended thread stayed open")
    backend.close()


def test_the_sql_files_ship_inside_the_package() -> None:
    package = resources.files("conveyor.backends.sqlite")
    assert package.joinpath("schema.sql").is_file()
    assert package.joinpath("queries.sql").is_file()


@pytest.mark.parametrize("batch", [1, 3])
def test_a_claimed_record_is_the_stored_job_though_the_claim_returns_fewer_columns(
    url: str, batch: int
) -> None:
    backend = SQLiteBackend(url)
    for n in range(batch):
        enqueue_one(
            backend,
            key=f"k{n}",
            unique_key=f"u{n}",
            expires_at=NOW + 600,
            meta={"tag": n},
            result_ttl=60.0,
        )
    first = backend.claim("w1", ["default"], batch, lease_seconds=LEASE, now=NOW)
    error = ErrorInfo("Boom", "went wrong")
    for claim in first:  # a progress and an error stay on the job when it is retried
        assert backend.set_progress(claim.record.id, claim.token, Progress(50.0, "half"))
        retry = Outcome.retry(NOW, error, now=NOW)
        assert backend.finish(claim.record.id, claim.token, retry, now=NOW)
    claims = backend.claim("w2", ["default"], batch, lease_seconds=LEASE, now=NOW + 1)
    assert len(claims) == batch
    for claim in claims:
        stored = backend.get(claim.record.id)
        assert stored is not None and claim.record == stored
        assert (stored.state, stored.worker, stored.token) == (State.RUNNING, "w2", claim.token)
        assert (stored.error, stored.progress) == (error, Progress(50.0, "half"))
    backend.close()


@pytest.mark.parametrize("queues", [["default"], ["default", "other"]])
def test_a_claim_of_plain_rare_and_due_scheduled_jobs_returns_each_as_stored_best_first(
    url: str, queues: list[str]
) -> None:
    # a plain job's record is made from its ready row, one with a rare column set is read
    # back, and a scheduled job whose time came is read by a second look and merged in
    backend = SQLiteBackend(url)
    plain = enqueue_one(backend, meta={"tag": 1})
    rare = enqueue_one(backend, priority=1, key="k")
    due = enqueue_one(backend, priority=2, ready_at=NOW + 5)
    enqueue_one(backend, priority=3, ready_at=NOW + 60)  # not due yet
    claims = backend.claim("w1", queues, 5, lease_seconds=LEASE, now=NOW + 10)
    assert [c.record.id for c in claims] == [due.id, rare.id, plain.id]
    for claim in claims:
        assert claim.record == backend.get(claim.record.id)
        assert (claim.record.attempts, claim.record.token) == (1, claim.token)
    backend.close()


@pytest.mark.parametrize("batch", [1, 2, 3, 1001])
def test_a_claim_marks_every_job_it_returns_running_whatever_its_size(url: str, batch: int) -> None:
    # one statement per job for two, else a list of placeholders per CLAIM_CHUNK (500) jobs
    backend = SQLiteBackend(url)
    records = backend.enqueue([make_record(priority=n % 3) for n in range(batch + 1)])
    claims = backend.claim("w1", ["default"], batch, lease_seconds=LEASE, now=NOW)
    best = sorted(records, key=lambda r: (-r.priority, r.ready_at, r.id))[:batch]
    assert [c.record.id for c in claims] == [r.id for r in best]
    assert all(backend.get(c.record.id) == c.record for c in claims)
    assert backend.queue_counts()["default"][State.QUEUED] == 1
    backend.close()


@pytest.mark.parametrize("batch", [2, 12, 1001])
def test_a_batch_of_final_outcomes_is_fenced_job_by_job_whatever_its_size(
    url: str, batch: int
) -> None:
    # an executemany for a few, one finish_finals per FINALS_CHUNK (500) from FINALS_AT_ONCE
    # (10) on; a refused finish sends the batch through one UPDATE at a time
    backend = SQLiteBackend(url)
    backend.enqueue([make_record() for _ in range(2 * batch)])
    claims = backend.claim("w1", ["default"], 2 * batch, lease_seconds=LEASE, now=NOW)
    first, second = claims[:batch], claims[batch:]
    outcomes = [Outcome.succeeded(b"%d" % n) for n in range(batch)]
    items = [(c.record.id, c.token, o) for c, o in zip(first, outcomes, strict=True)]
    assert backend.finish_many(items, now=NOW + 1) == [True] * batch
    for claim, outcome in zip(first, outcomes, strict=True):
        record = backend.get(claim.record.id)
        assert record is not None and record.state is State.SUCCEEDED
        assert (record.result, record.finished_at) == (outcome.result, NOW + 1)
    stale = [(second[0].record.id, second[0].token + 1, Outcome.succeeded(b"x"))]
    again = [(c.record.id, c.token, Outcome.failed(ErrorInfo("Boom", "no"))) for c in second]
    assert backend.finish_many(stale + again + again[:1], now=NOW + 2) == [
        False,
        *[True] * batch,
        False,
    ]
    for claim in second:
        record = backend.get(claim.record.id)
        assert record is not None and record.state is State.FAILED
    backend.close()


def test_a_threads_connections_close_once_when_two_threads_close_them_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Connections.close() and the ending thread's drop of its slot can meet in _Slot.close:
    # the gate's descriptor must be closed once, or the second close fails (EBADF) or, worse,
    # closes whatever file got that number in between
    from conveyor.backends.sqlite.connections import Connections, Options

    def close_at_once(slot: object, start: threading.Barrier, errors: list[BaseException]) -> None:
        start.wait()
        try:
            slot.close()  # type: ignore[attr-defined]
        except BaseException as e:
            errors.append(e)

    real_close = os.close

    def slow_close(fd: int) -> None:  # widens the window between reading the gate and closing
        time.sleep(0.01)
        real_close(fd)

    for _ in range(5):
        db = Connections(Options(str(tmp_path / "jobs.db")))
        with db.write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        (slot,) = list(db._slots)
        assert slot.gate is not None
        errors: list[BaseException] = []
        start = threading.Barrier(2)
        monkeypatch.setattr(os, "close", slow_close)
        threads = [
            threading.Thread(target=close_at_once, args=(slot, start, errors)) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        monkeypatch.setattr(os, "close", real_close)
        assert errors == []
        assert slot.gate is None and slot.conn is None
        other = os.open(str(tmp_path / "other"), os.O_RDWR | os.O_CREAT)  # may take the number
        slot.close()
        os.fstat(other)  # still open: a late close did not take it
        os.close(other)


def test_a_finish_stores_its_result_and_error_as_given_none_empty_small_or_large(
    url: str,
) -> None:
    # finish_final binds None as 0 (nullif) and small results as a bytearray: what is read
    # back must be exactly what was finished, NULL apart from an empty blob
    backend = SQLiteBackend(url)
    error = ErrorInfo("Boom", "went wrong")
    outcomes = [
        Outcome(State.SUCCEEDED),
        Outcome(State.SUCCEEDED, result=b""),
        Outcome(State.SUCCEEDED, result=b"\x00\xc0"),
        Outcome(State.SUCCEEDED, result=bytes(range(256)) * 300),  # past the copied size
        Outcome(State.FAILED, error=error),
        Outcome(State.FAILED, result=b"carried", error=error),
    ]
    for _ in outcomes:
        enqueue_one(backend)
    claims = backend.claim("w", ["default"], len(outcomes), lease_seconds=LEASE, now=NOW)
    items = [(c.record.id, c.token, o) for c, o in zip(claims, outcomes, strict=True)]
    assert backend.finish_many(items, now=NOW + 1) == [True] * len(outcomes)
    conn = sqlite3.connect(backend.options.path)
    for job_id, _, outcome in items:
        stored = backend.get(job_id)
        assert stored is not None
        assert (stored.state, stored.result, stored.error) == (
            outcome.state,
            outcome.result,
            outcome.error,
        )
        (kind,) = conn.execute(
            "SELECT typeof(result) FROM conveyor_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        assert kind == ("null" if outcome.result is None else "blob")
    conn.close()
    backend.close()
