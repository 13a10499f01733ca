"""``sqlite:///path.db``: the embedded default (see docs/sqlite.md)."""

from conveyor.backends.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
