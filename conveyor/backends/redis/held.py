"""One connection per thread for the scripts on one server, held for the thread's life.

Taking a connection from redis-py's pool and giving it back costs, on every call, a lock
twice, a ``poll`` of the socket (to tell a connection left mid-reply) and the pool's metrics:
about as many client instructions as the script's own call (``python -m bench.delay_cost``).
A connection held by its thread is never handed over mid-reply: redis-py disconnects it on
any error while sending or reading (a timeout, a lost server, an interrupt), and the next
call connects again. A connection made before a fork is left to the parent. When the thread
ends its connection goes with it; ``close`` closes those still held.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import redis


def _packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    """hiredis's ``pack_command``, which packs a whole command in C (redis-py's own packing
    walks the arguments in Python first: some 25k of a delay()'s 165k client instructions,
    ``python -m bench.delay_cost``); None without hiredis (it comes with the redis extra)."""
    try:
        from hiredis import pack_command
    except ImportError:  # pragma: no cover
        return None
    return pack_command


_PACK = _packer()


class HeldConnections:
    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()

    def execute(self, *command: Any) -> Any:
        """One command and its raw reply, on this thread's connection."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = self._connect()
        pack = _PACK
        if pack is None:  # pragma: no cover
            conn.send_command(*command)
        else:
            conn.send_packed_command([pack(command)])
        return conn.read_response()

    def _connect(self) -> Any:
        pool = self._pool
        conn = pool.connection_class(**pool.connection_kwargs)
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._all.add(conn)
        return conn

    def set_timeouts(self, timeout: float, connect: float) -> None:
        """New socket timeouts for the connections held now (later ones take the pool's)."""
        with self._lock:
            held = list(self._all)
        for conn in held:
            conn.socket_timeout, conn.socket_connect_timeout = timeout, connect
            sock = conn._sock
            if sock is not None:
                sock.settimeout(timeout)

    def close(self) -> None:
        with self._lock:
            held = list(self._all)
        for conn in held:
            conn.disconnect()
