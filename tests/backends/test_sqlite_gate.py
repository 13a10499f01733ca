"""The SQLite writers' gate (connections.Connections._enter_gate): threads of one process wait
for each other on a lock, asleep until it is free; other processes on the flock beside the
file; and nobody waits past the busy timeout."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conveyor.backends.sqlite import connections
from conveyor.backends.sqlite.connections import GATE_SUFFIX, Connections, Options
from conveyor.errors import BackendUnavailable

GATE_HELD = "another writer held the write gate for"


@pytest.fixture
def path(tmp_path: Path) -> str:
    path = str(tmp_path / "jobs.db")
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (thread INTEGER, n INTEGER)")
    return path


@pytest.fixture
def impatient(path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connections]:
    """Connections to the file that wait half a second for the gate, not the busy timeout."""
    monkeypatch.setattr(connections, "BUSY_TIMEOUT_SECONDS", 0.5)
    db = Connections(Options(path))
    yield db
    db.close()


@contextmanager
def held_by_a_thread(db: Connections) -> Iterator[None]:
    """Another thread of this process in a write transaction until the event is set."""
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write():
            inside.set()
            leave.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        leave.set()
        holder.join(30)


def test_threads_of_one_process_take_turns_without_sleeping(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two Connections of one file (two backends of one app), four threads: each write holds
    # the gate a while, so the others find it taken; they must wait on the lock, woken when
    # it is free, not try the flock again and again between sleeps.
    sleeps: list[float] = []
    real_sleep = time.sleep

    def counting_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", counting_sleep)
    dbs = [Connections(Options(path)), Connections(Options(path))]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(thread: int) -> None:
        db = dbs[thread % 2]
        try:
            start.wait(10)
            for n in range(40):
                with db.write() as conn:
                    conn.execute("INSERT INTO t VALUES (?, ?)", (thread, n))
                    busy_until = time.perf_counter() + 0.0005  # hold the gate a while
                    while time.perf_counter() < busy_until:
                        pass
                with db.autocommit() as conn:
                    conn.execute("INSERT INTO t VALUES (?, ?)", (thread, -n - 1))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sleeps == []
    rows = dbs[0].get().execute("SELECT thread, count(*) FROM t GROUP BY thread").fetchall()
    assert sorted(rows) == [(i, 80) for i in range(4)]
    for db in dbs:
        db.close()


def test_a_thread_waiting_for_another_threads_write_gives_up_at_the_busy_timeout(
    impatient: Connections,
) -> None:
    db = impatient
    with held_by_a_thread(db):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=GATE_HELD), db.write():
            pass
        assert 0.4 < time.monotonic() - started < 10
    with db.write() as conn:  # the gate is free again, for this thread too
        conn.execute("INSERT INTO t VALUES (0, 0)")


def test_a_writer_waits_for_another_processs_gate_until_the_busy_timeout(
    path: str, impatient: Connections
) -> None:
    # Another open file description of the gate file: what another process holds.
    db = impatient
    other = os.open(path + GATE_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(BackendUnavailable, match=GATE_HELD), db.autocommit() as conn:
            conn.execute("INSERT INTO t VALUES (0, 0)")
        # The timed-out thread let go of the process's lock: a write waits only for the
        # other process, and goes through once it lets go.
        threading.Timer(0.1, fcntl.flock, (other, fcntl.LOCK_UN)).start()
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES (0, 1)")
    finally:
        os.close(other)
    assert db.get().execute("SELECT n FROM t").fetchall() == [(1,)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on 3.12+
def test_a_forked_child_can_write_though_a_parent_thread_held_the_gate_at_the_fork(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The thread that holds the process's lock is not copied into the child: the child
    # must not wait for that lock, only for the parent's flock, which the parent releases.
    monkeypatch.setattr(connections, "BUSY_TIMEOUT_SECONDS", 5.0)
    db = Connections(Options(path))
    with held_by_a_thread(db):
        pid = os.fork()
        if pid == 0:  # the child: one write, then out without running the parent's cleanup
            status = 1
            try:
                with db.write() as conn:
                    conn.execute("INSERT INTO t VALUES (1, 1)")
                status = 0
            finally:
                os._exit(status)
        time.sleep(0.2)
    done = (0, 0)
    try:
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done[0] == pid, "the child still waits for the gate"
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert db.get().execute("SELECT thread, n FROM t").fetchall() == [(1, 1)]
    db.close()
