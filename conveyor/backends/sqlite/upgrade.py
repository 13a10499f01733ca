"""Bringing a file made by an older conveyor up to this schema, one namespace at a time.

schema.sql creates what is missing (``IF NOT EXISTS``) and drops what is gone; what cannot be
written that way is done here, in one write transaction after it: the columns added to a table
since it was first released (ALTER TABLE cannot be made conditional in SQL), and the tables
whose first rows are computed from the jobs already stored (sizes.sql). Each step looks at the
file first, under the write lock, so it is idempotent, and safe when several processes open the
file at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

#: (table, column, type) added since the table was first released
_COLUMNS = (
    ("jobs", "held", "TEXT"),  # limits
    ("events", "batch", "TEXT"),  # a feed row per statement (feed.py)
)


def upgrade(conn: sqlite3.Connection, namespace: str, *, sizes: str) -> None:
    """Add the columns ``namespace``'s tables lack, and the queue sizes (``sizes``: the text
    of sizes.sql for this namespace) when the file has none yet."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, column, kind in _COLUMNS:
            name = f"{namespace}_{table}"
            if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}:
                conn.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")
        if not _exists(conn, f"{namespace}_queue_sizes"):
            for statement in statements(sizes):
                conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(query, (table,)).fetchone() is not None


def statements(script: str) -> Iterator[str]:
    """The statements of ``script`` one by one (a trigger's body holds semicolons of its own):
    executescript would commit the transaction they must run in."""
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError(f"an incomplete SQL statement: {pending!r}")
