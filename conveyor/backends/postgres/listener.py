"""Wake-ups through LISTEN/NOTIFY: one dedicated connection per backend listens on the
namespace's channel, and a thread turns each notification into a wake-up of the threads
waiting in this process.

Why a connection of its own: a pooled connection goes back to the pool between operations,
and a connection that has run LISTEN must stay open and idle to receive. Why counters: a
waiter takes a ``snapshot`` before it reads the store and waits with it after, so a
notification that arrives in between is never lost. When the connection is lost, every waiter
is woken (notifications may have been missed meanwhile) and the listener connects again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Sequence

import psycopg

from conveyor.backends.postgres.store import Database

log = logging.getLogger("conveyor.postgres")

Snapshot = tuple[int, tuple[int, ...]]


class Board:
    """Counters by key (a queue's name, a job's id) and one for everything, under one
    condition. With ``every_key`` each key seen is counted (queues: a few); without, only
    watched keys are (jobs: as many as their waiters), so the board stays small."""

    def __init__(self, *, every_key: bool = False) -> None:
        self._every_key = every_key
        self._cond = threading.Condition()
        self._everything = 0
        self._counts: dict[str, int] = {}
        self._watchers: Counter[str] = Counter()

    def watch(self, keys: Sequence[str]) -> Snapshot:
        with self._cond:
            for key in keys:
                self._watchers[key] += 1
                self._counts.setdefault(key, 0)
            return self._snapshot(keys)

    def unwatch(self, keys: Sequence[str]) -> None:
        with self._cond:
            for key in keys:
                self._watchers[key] -= 1
                if self._watchers[key] <= 0:
                    del self._watchers[key]
                    self._counts.pop(key, None)

    def snapshot(self, keys: Sequence[str]) -> Snapshot:
        with self._cond:
            return self._snapshot(keys)

    def _snapshot(self, keys: Sequence[str]) -> Snapshot:
        return self._everything, tuple(self._counts.get(k, 0) for k in keys)

    def bump(self, keys: Iterable[str]) -> None:
        with self._cond:
            hit = False
            for key in keys:
                if key in self._counts:
                    self._counts[key] += 1
                    hit = True
                elif self._every_key:
                    self._counts[key] = 1
                    hit = True
            if hit:
                self._cond.notify_all()

    def bump_all(self) -> None:
        with self._cond:
            self._everything += 1
            self._cond.notify_all()

    def wait(self, keys: Sequence[str], since: Snapshot, timeout: float) -> bool:
        """Until a key changed after ``since`` (the caller watches ``keys``); True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: self._snapshot(keys) != since, timeout)


class Listener:
    """LISTEN on the namespace's channel from a daemon thread, started on first need."""

    def __init__(self, db: Database, channel: str) -> None:
        self._db = db
        #: off (``?listen=off``, behind PgBouncer in transaction mode): waiters poll
        self.enabled = db.options.listen
        self._channel = channel
        self.ready = Board(every_key=True)  # "r <queue>": jobs may be ready in the queue
        self.changed = Board()  # "c <id> ...": the jobs changed
        self.anything = Board()  # any notification: the change feed may have grown
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def ensure(self, timeout: float = 5.0) -> None:
        """Start listening if not yet, and wait (briefly) until LISTEN is in force, so that
        a read made after this sees, or is woken by, every later commit."""
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._pid, self._thread = os.getpid(), None
            self._listening = threading.Event()
            self._lock = threading.Lock()
        if self._listening.is_set() or not self.enabled:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-pg-listen", daemon=True
                )
                self._thread.start()
        bound = self._db.wait_bound.seconds  # a worker's share of its lease: no longer
        self._listening.wait(timeout if bound is None else min(timeout, bound))

    def _run(self) -> None:
        delay = 0.05
        while not self._stopping.is_set():
            try:
                # TCP keepalives: an idle LISTEN connection whose peer vanished (a partition,
                # a lost host) is noticed within half a minute, not the system's two hours.
                with self._db.connect(
                    keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3
                ) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._listening.set()
                    self.ready.bump_all()  # a reconnect may have missed notifications
                    self.changed.bump_all()
                    self.anything.bump_all()
                    delay = 0.05
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._dispatch(note.payload)
                            if self._stopping.is_set():
                                break
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                log.warning("LISTEN connection lost (%s); reconnecting in %.2f s", exc, delay)
            finally:
                self._listening.clear()
            self.ready.bump_all()
            self.changed.bump_all()
            self.anything.bump_all()
            self._stopping.wait(delay)
            delay = min(delay * 2, 2.0)

    def _dispatch(self, payload: str) -> None:
        self.anything.bump_all()
        kind, _, rest = payload.partition(" ")
        if kind == "r":
            self.ready.bump((rest,))
        elif kind == "c":
            self.changed.bump(rest.split(" "))

    def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._db.try_once(lambda c: c.execute("SELECT pg_notify(%s, 'x')", [self._channel]))
            thread.join(5.0)
        self._thread = None
