"""Bringing a file made by an older conveyor up to this schema, one namespace at a time.

schema.sql creates what is missing (``IF NOT EXISTS``) and drops what is gone; the columns
added to a table since it was first released are added here (ALTER TABLE cannot be made
conditional in SQL), in one write transaction after it. Each step looks at the file first, so
it is idempotent, and safe when several processes open the file at once.
"""

from __future__ import annotations

import sqlite3

#: (table, column, type) added since the table was first released
_COLUMNS = (
    ("jobs", "held", "TEXT"),  # limits
    ("events", "batch", "TEXT"),  # a feed row per statement (feed.py)
)


def upgrade(conn: sqlite3.Connection, namespace: str) -> None:
    """Add the columns ``namespace``'s tables lack."""
    conn.execute("BEGIN IMMEDIATE")
    for table, column, kind in _COLUMNS:
        name = f"{namespace}_{table}"
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}:
            conn.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")
    conn.execute("COMMIT")
