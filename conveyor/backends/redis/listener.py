"""Job changes over Redis pub/sub: one subscriber thread per backend, started at the first
wait for a job (``wait_final``, ``wait_for_change``).

The scripts publish on ``<prefix>changed`` (space-separated ids) when jobs change. The thread
turns those messages into in-process ``Signal``s, so a waiter wakes about one network hop
after the change instead of polling. After a lost connection it resubscribes by itself, and
wakes every waiter (messages sent meanwhile are gone, so everyone looks again). (Idle workers
wait for jobs otherwise: on a wake list each, see ``probe.lua``.)

On a Cluster (named by the URL or detected at the first call) the channels are sharded
(SSUBSCRIBE on the node that owns the namespace's slot). When the slot moves or its node
fails over, the server ends the subscription (an ``sunsubscribe`` message) or the connection
drops; the thread then updates the map of slots, subscribes at the new owner and wakes every
waiter, as after a lost connection.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from conveyor.backends.base import Signal
from conveyor.backends.redis.connection import RETRYABLE, Connection
from conveyor.errors import BackendUnavailable, ConfigurationError

log = logging.getLogger("conveyor.backends.redis")


class _Unsubscribed(Exception):
    """The server ended a sharded subscription: the namespace's slot has another owner."""


class Listener:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        prefix = connection.prefix
        self._changed = prefix + "changed"
        # a channel of this instance alone, so close() can wake its own thread at once
        self._control = f"{prefix}control:{uuid.uuid4().hex}"
        self._watchers: dict[str, tuple[Signal, list[int]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._stopping = threading.Event()

    def ensure_started(self, timeout: float = 5.0) -> None:
        """Start the thread if needed and wait until it listens, so that no message sent
        after this returns is missed (unless the connection is down)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-redis-listener", daemon=True
                )
                self._thread.start()
        self._subscribed.wait(timeout)

    @contextmanager
    def watch(self, job_id: str) -> Iterator[Signal]:
        """A signal notified whenever the job changes, for as long as the block runs."""
        with self._lock:
            signal, users = self._watchers.setdefault(job_id, (Signal(), [0]))
            users[0] += 1
        try:
            yield signal
        finally:
            with self._lock:
                users[0] -= 1
                if users[0] == 0:
                    del self._watchers[job_id]

    def close(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is None:
            return
        # if the server is gone the thread sees the flag within its read timeout
        with contextlib.suppress(*RETRYABLE, redis.RedisError, ConfigurationError):
            self._connection.publish(self._control, "stop")
        thread.join(6.0)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.05
        lost = False
        while not self._stopping.is_set():
            pubsub: Any = None
            try:
                if lost:
                    self._connection.locate()
                pubsub = self._connection.node().pubsub()  # type: ignore[no-untyped-call]
                channels = (self._changed, self._control)
                if self._connection.sharded:
                    pubsub.ssubscribe(*channels)
                else:
                    pubsub.subscribe(*channels)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=5.0)
                    if message is not None:
                        delay = 0.05
                        self._dispatch(message)
            # a ConfigurationError (a detected Cluster and a database other than 0) is raised
            # again, without a round trip, to whoever calls the backend: here, just wait
            except (*RETRYABLE, BackendUnavailable, ConfigurationError, _Unsubscribed) as exc:
                if not self._subscribed.is_set() and delay == 0.05:
                    log.debug("redis listener cannot subscribe: %s", exc)
                elif self._subscribed.is_set():
                    log.warning("redis listener lost its subscription (%s); resubscribing", exc)
                lost = True
                self._subscribed.clear()
                self._notify_all()
                self._stopping.wait(delay)
                delay = min(delay * 2, 1.0)
            finally:
                if pubsub is not None:
                    pubsub.close()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel, data = message["type"], message["channel"], message["data"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind in ("subscribe", "ssubscribe"):
            if data == 2:  # both channels: from now on nothing is missed
                self._subscribed.set()
                self._notify_all()
        elif kind == "sunsubscribe":
            raise _Unsubscribed(f"the server ended the subscription to {channel}")
        elif kind in ("message", "smessage") and channel == self._changed:
            with self._lock:
                signals = [self._watchers.get(i.decode()) for i in data.split()]
            for entry in signals:
                if entry is not None:
                    entry[0].notify()

    def _notify_all(self) -> None:
        with self._lock:
            signals = [signal for signal, _ in self._watchers.values()]
        for signal in signals:
            signal.notify()
