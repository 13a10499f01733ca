"""The layout version of a namespace's tables, and the steps from each version to the next.

``{ns}_schema`` holds one row: the version of the layout the tables have. Opening a store
creates the tables of a new namespace, migrates an older layout when every step to ours is
safe to run unattended (additive: new tables, columns with defaults, new indexes), and
refuses a layout newer than this conveyor knows with one line that says what to do.
``conveyor migrate`` runs the steps that are not safe to run unattended.

Every step runs in one transaction under an advisory lock of the namespace, so processes that
open the store at once create or migrate it once, and a step that fails leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from conveyor.backends.postgres.store import Database, expand, sql_file
from conveyor.errors import ConfigurationError

#: the layout this conveyor reads and writes
SCHEMA_VERSION = 3


@dataclass(frozen=True, slots=True)
class Step:
    """From ``version - 1`` to ``version``: the statements of ``file``."""

    version: int
    file: str
    safe: bool  # may run when a process opens the store (additive and quick)


#: every step after the first layout (schema.sql), in order
STEPS: tuple[Step, ...] = (
    Step(2, "layout_2.sql", safe=True),  # the change feed, counters, listing indexes
    Step(3, "layout_3.sql", safe=True),  # listing by task and queue: running jobs left out
)


class SchemaTooNew(ConfigurationError):
    """The store was written by a newer conveyor."""


class SchemaTooOld(ConfigurationError):
    """The store needs ``conveyor migrate`` before this conveyor can use it."""


def _lock(conn: psycopg.Connection[Any], namespace: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"conveyor:{namespace}"])


def stored_version(conn: psycopg.Connection[Any], namespace: str) -> int | None:
    """The store's layout version; None for a namespace with no tables yet."""
    exists = conn.execute("SELECT to_regclass(%s)", [f"{namespace}_schema"]).fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute(f"SELECT version FROM {namespace}_schema").fetchone()
    return None if row is None else int(row[0])


def _check(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the store at {where} has layout version {version}, newer than this conveyor "
            f"knows ({SCHEMA_VERSION}): upgrade conveyor"
        )


def pending(version: int) -> list[Step]:
    return [step for step in STEPS if step.version > version]


def _create(conn: psycopg.Connection[Any], namespace: str) -> int:
    """The first layout, unless another process made it meanwhile (the advisory lock does not
    refresh the catalog a transaction sees, so "no table yet" may be stale): then its version
    as found. One row in ``_schema``, whoever gets there first."""
    conn.execute(expand(sql_file("schema.sql"), namespace).encode())
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {namespace}_schema "
        "(one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)"
    )
    conn.execute(f"INSERT INTO {namespace}_schema (version) VALUES (1) ON CONFLICT DO NOTHING")
    return stored_version(conn, namespace) or 1


def _apply(conn: psycopg.Connection[Any], namespace: str, steps: list[Step]) -> None:
    for step in steps:
        conn.execute(expand(sql_file(step.file), namespace).encode())
        conn.execute(f"UPDATE {namespace}_schema SET version = %s", [step.version])


def initialise(db: Database, namespace: str, where: str) -> int:
    """Make the namespace's tables ready for this conveyor; returns the version found before
    the safe steps ran."""

    def prepare(conn: psycopg.Connection[Any]) -> int:
        with conn.transaction():
            found = stored_version(conn, namespace)
            if found == SCHEMA_VERSION:
                return found
            _lock(conn, namespace)
            found = stored_version(conn, namespace)  # again: someone may have been first
            if found is None:
                found = _create(conn, namespace)
            _check(found, where)
            steps = pending(max(found, 1))
            if any(not step.safe for step in steps):
                raise SchemaTooOld(
                    f"the store at {where} has layout version {found}; this conveyor needs "
                    f"{SCHEMA_VERSION}: run `conveyor migrate` first"
                )
            _apply(conn, namespace, steps)
            return found

    return db.run(prepare)


def migrate(db: Database, namespace: str, where: str) -> tuple[int, int]:
    """Bring the store to this conveyor's layout, whatever the steps; (before, after)."""

    def run(conn: psycopg.Connection[Any]) -> tuple[int, int]:
        with conn.transaction():
            _lock(conn, namespace)
            found = stored_version(conn, namespace)
            if found is None:
                _create(conn, namespace)
                found = 0
            _check(found, where)
            _apply(conn, namespace, pending(max(found, 1)))
            return found, SCHEMA_VERSION

    return db.run(run)
