"""The file: URL options, the SQL text, and creating or upgrading the tables.

Connections live in connections.py and wake-ups in wakeups.py.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from conveyor.backends.sqlite.connections import BUSY_TIMEOUT_SECONDS, Options
from conveyor.backends.sqlite.faults import READONLY, newer_schema, store_error
from conveyor.backends.sqlite.rows import COLUMNS, PLACEHOLDERS, RARE, READY
from conveyor.backends.sqlite.upgrade import upgrade
from conveyor.errors import ConfigurationError
from conveyor.inspection import RUNTIME_BUCKETS, bucket_label

#: the version of the tables this conveyor writes, kept in the file's PRAGMA user_version:
#: raise it with every change an older conveyor could not read
SCHEMA_VERSION = 3  # 2: the change feed in rows per statement (feed.py); 3: queue sizes

SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
        .replace("{ready}", READY)
        .replace("{rare}", RARE)
        .replace("{values}", PLACEHOLDERS)
        .replace("{clock}", CLOCK)
        .replace("{row_runtime_bucket}", _runtime_bucket(RUNTIME))
        .replace("{row_runtime}", RUNTIME)
    )


@functools.lru_cache(maxsize=1024)
def numbered(sql: str, marker: str, n: int, width: int, first: int) -> str:
    """``sql`` with ``marker`` replaced by ``n`` rows of ``width`` placeholders numbered from
    ``?first`` (one row: ``?4, ?5``; wider: ``(?2, ?3), (?4, ?5)``), for a statement that
    takes a list (queries.sql claim, finish_finals). Made once per list size: the same text
    object each time, whose hash the statement cache need not compute again."""
    places = [f"?{i}" for i in range(first, first + n * width)]
    if width > 1:
        rows = (places[i : i + width] for i in range(0, len(places), width))
        places = ["(" + ", ".join(row) + ")" for row in rows]
    return sql.replace(marker, ", ".join(places))


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
            # first) and the queue sizes, then the limits' tables and indexes.
            upgrade(conn, namespace, sizes=_expand(_sql_file("sizes.sql"), namespace))
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
