"""``postgresql://user@host/db``: many machines, and jobs enqueued in the caller's own
transaction (see docs/postgres.md)."""

from conveyor.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
