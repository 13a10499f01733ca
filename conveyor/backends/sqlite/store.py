"""The file: URL options, the SQL text, one connection per thread, and wake-ups.

Every connection runs in autocommit mode (``isolation_level=None``) and opens its own
transactions: reads see the latest commit without holding a snapshot open, and every write
begins with ``BEGIN IMMEDIATE`` (see ``Connections.write``).
"""

from __future__ import annotations

import fcntl
import functools
import math
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from conveyor.backends.base import Signal
from conveyor.backends.sqlite.faults import READONLY, newer_schema, raise_store_error, store_error
from conveyor.backends.sqlite.rows import COLUMNS, PLACEHOLDERS
from conveyor.backends.sqlite.upgrade import upgrade
from conveyor.errors import BackendUnavailable, ConfigurationError
from conveyor.inspection import RUNTIME_BUCKETS, bucket_label

#: how long a writer waits for another connection's write transaction before giving up
BUSY_TIMEOUT_SECONDS = 30.0
#: the writers' gate beside the database file (see Connections._enter_gate)
GATE_SUFFIX = "-conveyor-gate"
#: the version of the tables this conveyor writes, kept in the file's PRAGMA user_version:
#: raise it with every change an older conveyor could not read
SCHEMA_VERSION = 2  # 2: the change feed in rows per statement (feed.py)
#: how often a waiter looks for commits made by other processes
WAKE_SLICE_SECONDS = 0.0015

SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Options:
    path: str
    synchronous: str = "FULL"


def parse_url(url: str) -> Options:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``?synchronous=normal``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not an sqlite:// URL: {url!r}")
    if parts.netloc:
        raise ConfigurationError(
            f"sqlite:// URLs name a file, not a host: {url!r}; use sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not raw_path or raw_path == ":memory:":
        raise ConfigurationError(
            f"{url!r} names no database file; use sqlite:///jobs.db (or memory:// for an "
            "in-process store)"
        )
    synchronous = "FULL"
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "synchronous":
            raise ConfigurationError(
                f"unknown sqlite:// option {name!r} in {url!r}; the one option is "
                "synchronous=full|normal"
            )
        if value.lower() not in SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous={value!r} in {url!r}: use synchronous=full (the default: a "
                "commit survives power loss) or synchronous=normal (survives a process crash)"
            )
        synchronous = SYNCHRONOUS[value.lower()]
    path = os.path.abspath(raw_path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"the directory {directory!r} for the database {url!r} does not exist; create it first"
        )
    if os.path.isdir(path):
        raise ConfigurationError(
            f"{path} in {url!r} is a directory, not a database file; name a file in it, e.g. "
            f"sqlite:///{os.path.join(path, 'jobs.db')}"
        )
    return Options(path, synchronous)


def check_namespace(namespace: str) -> str:
    if not NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} cannot prefix SQLite table names: use letters, digits "
            "and underscores, not starting with a digit"
        )
    return namespace


@functools.cache
def _sql_file(name: str) -> str:
    return (resources.files(__package__) / name).read_text(encoding="utf-8")


#: the store's clock in SQL, POSIX seconds (unixepoch('subsec') needs SQLite 3.42)
CLOCK = "((julianday('now') - 2440587.5) * 86400.0)"
#: a finished attempt's run time, in a query of the jobs table
RUNTIME = "(finished_at - coalesce(started_at, finished_at))"


def _runtime_bucket(runtime: str) -> str:
    """The label of the run-time bucket (inspection.RUNTIME_BUCKETS) in SQL."""
    arms = " ".join(
        f"WHEN {runtime} <= {upper!r} THEN '{bucket_label(upper)}'"
        for upper in RUNTIME_BUCKETS
        if not math.isinf(upper)
    )
    return f"(CASE {arms} ELSE '+Inf' END)"


def _expand(text: str, namespace: str) -> str:
    return (
        text.replace("{ns}", namespace)
        .replace("{columns}", COLUMNS)
        .replace("{values}", PLACEHOLDERS)
        .replace("{clock}", CLOCK)
        .replace("{row_runtime_bucket}", _runtime_bucket(RUNTIME))
        .replace("{row_runtime}", RUNTIME)
    )


def schema_sql(namespace: str) -> str:
    return _expand(_sql_file("schema.sql"), namespace)


def queries(namespace: str) -> Mapping[str, str]:
    """The named statements of queries.sql and limits.sql, for one namespace."""
    out: dict[str, str] = {}
    for file in ("queries.sql", "limits.sql"):
        for section in _sql_file(file).split("-- name: ")[1:]:
            name, _, body = section.partition("\n")
            out[name.strip()] = _expand(body.strip(), namespace)
    return out


def limits_schema_sql(namespace: str) -> str:
    """The tables and indexes of limits.sql (its part before the first statement)."""
    return _expand(_sql_file("limits.sql").split("-- name: ")[0], namespace)


class _Slot:
    """One thread's connections. They close when the thread ends (its thread-local slot is
    dropped), so threads that come and go do not leak file handles."""

    __slots__ = ("__weakref__", "conn", "gate", "inherited", "watcher")

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.watcher: sqlite3.Connection | None = None
        self.gate: int | None = None
        self.inherited = False

    def close(self) -> None:
        if self.inherited:
            return
        for conn in (self.conn, self.watcher):
            if conn is not None:
                conn.close()
        if self.gate is not None:
            os.close(self.gate)
        self.conn = self.watcher = None
        self.gate = None

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
        self._pid = os.getpid()

    def _slot(self) -> _Slot:
        if self._pid != os.getpid():
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
        self._pid = os.getpid()
        self._slots = weakref.WeakSet()
        self._local = threading.local()

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

    def _enter_gate(self, fd: int) -> None:
        """Take the writers' gate: an flock on a file beside the database.

        Why: SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms when the write lock is
        taken, so two busy processes with short transactions spend most of their time asleep.
        The gate is tried without blocking and again after sleeps that start at tens of
        microseconds and never exceed half a millisecond. Every connection (and thread) has
        its own descriptor, so the gate excludes threads as well as processes. BEGIN IMMEDIATE
        keeps SQLite's full busy timeout for writers that do not use the gate.
        """
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        pause = 0.00002
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackendUnavailable(
                        f"{self.options.path!r}: another writer held the write gate for "
                        f"{BUSY_TIMEOUT_SECONDS:.0f} s"
                    ) from None
                pause = min(pause * 2, 0.0005)

    @contextmanager
    def autocommit(self) -> Iterator[sqlite3.Connection]:
        """One write statement that is a transaction on its own (no BEGIN or COMMIT to send),
        behind the writers' gate like every other write."""
        conn = self.get()
        gate = self._gate()
        self._enter_gate(gate)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise_store_error(self.options.path, exc)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

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
        self._enter_gate(gate)
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
            fcntl.flock(gate, fcntl.LOCK_UN)

    def close(self) -> None:
        for slot in list(self._slots):
            slot.close()
        self._local = threading.local()


def initialise(options: Options, namespace: str) -> None:
    """Switch the file to WAL and create the namespace's tables (idempotent, and safe when
    several processes open a new file at once)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            _initialise(options, namespace)
            return
        except sqlite3.OperationalError as exc:
            # Switching a new file to WAL needs it alone for a moment, and SQLite answers
            # "locked" at once, without its busy wait, while another process does the same.
            busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (5, 6)  # BUSY, LOCKED
            if not busy or time.monotonic() > deadline:
                error = store_error(options.path, exc)
                raise error or ConfigurationError(f"cannot open {options.path!r}: {exc}") from exc
            time.sleep(0.01)
        except sqlite3.DatabaseError as exc:
            error = store_error(options.path, exc)
            raise error or ConfigurationError(
                f"cannot open {options.path!r} as a database: {exc}"
            ) from exc


def _initialise(options: Options, namespace: str) -> None:
    conn = sqlite3.connect(options.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        version = check_schema_version(conn, options.path)
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigurationError(
                f"{options.path!r} cannot use SQLite's WAL journal (got {mode!r}); put the "
                "database on a local file system"
            )
        stamp = f"PRAGMA user_version = {SCHEMA_VERSION};" if version < SCHEMA_VERSION else ""
        # One transaction: a failure leaves nothing behind (closing rolls it back).
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{schema_sql(namespace)}\n{stamp}\nCOMMIT;")
            # A file made by an older conveyor gets the columns it lacks (the held column
            # first), then the limits' tables and indexes.
            upgrade(conn, namespace)
            conn.executescript(f"BEGIN IMMEDIATE;\n{limits_schema_sql(namespace)}\nCOMMIT;")
        except sqlite3.OperationalError as exc:
            # A read-only file that already holds the tables can still be read (conveyor
            # jobs); its first write says what is wrong.
            readonly = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == READONLY
            if not (readonly and _has_tables(conn, namespace)):
                raise
    finally:
        conn.close()


def check_schema_version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version (``PRAGMA user_version``, 0 before versions existed); a
    file from a newer conveyor is refused before anything touches it."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise newer_schema(path, version, SCHEMA_VERSION)
    return version


def _has_tables(conn: sqlite3.Connection, namespace: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (f"{namespace}_jobs",)
    )
    return found.fetchone() is not None


class Wakeups:
    """In-process signals, and other processes' commits seen through ``data_version``.

    ``ready`` fires when jobs may have become claimable, ``changed`` when any job changed.
    A waiter waits on the signal in short slices and reads ``data_version`` between them, so
    a commit from another process wakes it within a slice, without querying the jobs table.
    """

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self.ready = Signal()
        self.changed = Signal()

    def snapshot(self, signal: Signal) -> tuple[int, int]:
        """Where things stand now: take it before reading the store, wait with it after."""
        return signal.generation, self._connections.data_version()

    def wait(self, signal: Signal, timeout: float, since: tuple[int, int] | None) -> bool:
        """Until ``signal`` fires or another connection commits after ``since``; True if so."""
        generation, version = since if since is not None else self.snapshot(signal)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if signal.wait(min(WAKE_SLICE_SECONDS, remaining), generation):
                return True
            if self._connections.data_version() != version:
                return True
