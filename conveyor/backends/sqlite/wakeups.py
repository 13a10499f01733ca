"""Waking idle waiters: in-process signals plus other processes' commits, apart from the
connections they read ``data_version`` through."""

from __future__ import annotations

import time

from conveyor.backends.base import Signal
from conveyor.backends.sqlite.connections import Connections

#: how often a waiter looks for commits made by other processes
WAKE_SLICE_SECONDS = 0.0015


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
