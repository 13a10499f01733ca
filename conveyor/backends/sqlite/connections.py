"""One connection per thread and the writers' gate: how every read and write reaches the file.

Every connection runs in autocommit mode (``isolation_level=None``) and opens its own
transactions: reads see the latest commit without holding a snapshot open, and every write
begins with ``BEGIN IMMEDIATE`` (see ``Connections.write``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from conveyor.backends.sqlite.faults import raise_store_error
from conveyor.errors import BackendUnavailable

#: how long a writer waits for another connection's write transaction before giving up
BUSY_TIMEOUT_SECONDS = 30.0
#: the writers' gate beside the database file (see Connections._enter_gate)
GATE_SUFFIX = "-conveyor-gate"

#: the in-process half of the writers' gate, one lock per database file (see _process_lock)
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
#: how many forks made this process (counted in the child): how a Connections notices that
#: it now lives in a child, without a getpid system call per statement
_forks = 0


def _process_lock(path: str) -> threading.Lock:
    """The lock that the threads of this process take, for the file ``path``, before they try
    the gate's flock: shared by every ``Connections`` of that file, so that two backends of
    one app on one file queue up here too."""
    with _locks_guard:
        lock = _locks.get(path)
        if lock is None:
            lock = _locks[path] = threading.Lock()
        return lock


def _in_child_after_fork() -> None:
    # A child made by fork has one thread: a lock that another thread of the parent held at
    # the fork would stay held for ever in the child, so it starts with locks of its own
    # (each Connections picks its lock up again in _after_fork).
    global _locks, _locks_guard, _forks
    _locks, _locks_guard = {}, threading.Lock()
    _forks += 1


os.register_at_fork(after_in_child=_in_child_after_fork)


@dataclass(frozen=True, slots=True)
class Options:
    path: str
    synchronous: str = "FULL"


def _leave_gate(fd: int, lock: threading.Lock) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        lock.release()


class _Slot:
    """One thread's connections. They close when the thread ends (its thread-local slot is
    dropped), so threads that come and go do not leak file handles."""

    __slots__ = ("__weakref__", "_closing", "conn", "gate", "inherited", "watcher")

    def __init__(self) -> None:
        self._closing = threading.Lock()
        self.inherited = False
        self.conn: sqlite3.Connection | None = None
        self.watcher: sqlite3.Connection | None = None
        self.gate: int | None = None

    def close(self) -> None:
        """Closes once, however many threads ask at the same time: ``Connections.close()``
        and the ending thread's own drop of its slot can meet here, and a descriptor closed
        twice may by then be another file's."""
        if self.inherited:
            return
        with self._closing:
            conns, gate = (self.conn, self.watcher), self.gate
            self.conn = self.watcher = None
            self.gate = None
        for conn in conns:
            if conn is not None:
                conn.close()
        if gate is not None:
            os.close(gate)

    __del__ = close


class Connections:
    """One connection per thread, created on first use; ``close()`` closes all of them.

    A second, idle connection per thread (the watcher) only reads ``PRAGMA data_version``,
    which changes when any other connection commits: how a waiter notices other processes.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self._slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
        self._inherited: list[_Slot] = []
        self._local = threading.local()
        self._forks = _forks
        self._lock = _process_lock(options.path)

    def _slot(self) -> _Slot:
        if self._forks != _forks:
            self._after_fork()
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = _Slot()
            self._slots.add(slot)
        return slot

    def _after_fork(self) -> None:
        # A forked child must not use or even close its parent's connections (SQLite's
        # locks would break); it keeps them, untouched, and opens its own.
        for slot in list(self._slots):
            slot.inherited = True
            self._inherited.append(slot)
        self._forks = _forks
        self._slots = weakref.WeakSet()
        self._local = threading.local()
        self._lock = _process_lock(self.options.path)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.options.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,  # close() and thread exit may close it from elsewhere
            cached_statements=256,
        )
        conn.execute(f"PRAGMA synchronous = {self.options.synchronous}")
        return conn

    def get(self) -> sqlite3.Connection:
        slot = self._slot()
        if slot.conn is None:
            slot.conn = self._open()
        return slot.conn

    def _gate(self) -> int:
        slot = self._slot()
        if slot.gate is None:
            try:
                slot.gate = os.open(self.options.path + GATE_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise_store_error(self.options.path, exc)
        return slot.gate

    def _enter_gate(self, fd: int) -> threading.Lock:
        """Take the writers' gate: this process's lock for the file, then an flock on a file
        beside the database. Returns the lock, for ``_leave_gate``.

        Why: SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms when the write lock is
        taken, so two busy processes with short transactions spend most of their time asleep.
        The threads of one process wait for each other on a lock, woken the moment it is
        free; only the thread that holds it tries the flock, so the flock is contended by
        other processes alone. The flock is tried without blocking and again after sleeps
        that start at tens of microseconds and never exceed half a millisecond (a blocking
        flock could not give up at the deadline). The whole wait, lock and flock, ends with
        BackendUnavailable after the busy timeout. BEGIN IMMEDIATE keeps SQLite's full busy
        timeout for writers that do not use the gate.
        """
        lock = self._lock
        deadline = 0.0
        if not lock.acquire(False):  # by position: keyword arguments cost a parse per call
            # Never a wait without end: a thread of this process that holds the lock while
            # it waits on a frozen process's flock gives up at its own deadline.
            deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
            if not lock.acquire(timeout=BUSY_TIMEOUT_SECONDS):
                raise self._gate_timeout()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._poll_flock(fd, deadline or time.monotonic() + BUSY_TIMEOUT_SECONDS)
        except BaseException:
            lock.release()
            raise
        return lock

    def _poll_flock(self, fd: int, deadline: float) -> None:
        pause = 0.00002
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise self._gate_timeout() from None
                pause = min(pause * 2, 0.0005)

    def _gate_timeout(self) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.options.path!r}: another writer held the write gate for "
            f"{BUSY_TIMEOUT_SECONDS:.0f} s"
        )

    @contextmanager
    def autocommit(self) -> Iterator[sqlite3.Connection]:
        """One write statement that is a transaction on its own (no BEGIN or COMMIT to send),
        behind the writers' gate like every other write."""
        conn = self.get()
        gate = self._gate()
        lock = self._enter_gate(gate)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise_store_error(self.options.path, exc)
        finally:
            _leave_gate(gate, lock)

    def data_version(self) -> int:
        slot = self._slot()
        if slot.watcher is None:
            slot.watcher = self._open()
        return int(slot.watcher.execute("PRAGMA data_version").fetchone()[0])

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction.

        BEGIN IMMEDIATE takes the database's write lock at the start, waiting up to the busy
        timeout for it. A plain (deferred) BEGIN would start as a reader and try to upgrade
        at its first write; if another connection wrote in between, SQLite cannot upgrade a
        stale snapshot and fails at once with SQLITE_BUSY, whatever the timeout. Taking the
        lock first also makes every read inside the transaction current, so a claim's SELECT
        and its UPDATE see the same rows and no other process can claim them in between.
        """
        conn = self.get()
        gate = self._gate()
        lock = self._enter_gate(gate)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise BackendUnavailable(
                    f"{self.options.path!r} stayed locked by another connection for "
                    f"{BUSY_TIMEOUT_SECONDS:.0f} s: {exc}"
                ) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            # A read-only file, a full disk...: one line naming the file, the cause, the fix.
            raise_store_error(self.options.path, exc)
        finally:
            _leave_gate(gate, lock)

    def close(self) -> None:
        for slot in list(self._slots):
            slot.close()
        self._local = threading.local()
