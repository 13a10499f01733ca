"""The database: the SQL text, a pool of connections, bounded retries when the server is
away, and the namespace's tables with their layout version.

Every pooled connection is in autocommit mode: a single statement is its own transaction (one
round trip), and compound operations open ``conn.transaction()`` explicitly.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from conveyor.backends.postgres.rows import COLUMNS, J_COLUMNS, NULL_COLUMNS, PLACEHOLDERS
from conveyor.errors import BackendUnavailable, ConfigurationError
from conveyor.inspection import RUNTIME_BUCKETS, bucket_label

log = logging.getLogger("conveyor.postgres")
T = TypeVar("T")

NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
#: how long an operation keeps trying while the server is away, before BackendUnavailable
RETRY_SECONDS = 15.0
#: how long one wait for the server may last, unless a worker bounds it to a share of its
#: lease (``Database.set_call_timeout``): past it the server is taken as frozen or cut off
WAIT_SECONDS = 120.0
POOL_MAX_SIZE = 16


def check_namespace(namespace: str) -> str:
    if not NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} cannot prefix PostgreSQL table names: use up to 41 "
            "letters, digits and underscores, not starting with a digit"
        )
    return namespace.lower()  # unquoted identifiers are folded to lower case anyway


@dataclass(frozen=True, slots=True)
class Options:
    """The URL for libpq, and conveyor's own options taken out of its query string."""

    conninfo: str
    prepared: bool = True  # psycopg prepares a statement after its 5th run on a connection
    listen: bool = True  # idle workers and result() wake on LISTEN/NOTIFY, else they poll


def _switch(url: str, name: str, value: str) -> bool:
    if value.lower() in ("on", "true", "1", "yes"):
        return True
    if value.lower() in ("off", "false", "0", "no"):
        return False
    raise ConfigurationError(f"{name}={value!r} in {safe_url(url)!r}: use {name}=on or {name}=off")


def parse_url(url: str) -> Options:
    """``postgresql://user:password@host:port/db?prepared=off&listen=off&sslmode=...``.

    ``prepared`` and ``listen`` are conveyor's (for PgBouncer in transaction mode: see
    docs/postgres.md); every other parameter goes to libpq as it is."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a postgresql:// URL: {safe_url(url)!r}")
    ours: dict[str, bool] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("prepared", "listen"):
            ours[name] = _switch(url, name, value)
        else:
            rest.append((name, value))
    return Options(parts._replace(query=urlencode(rest)).geturl(), **ours)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


@functools.cache
def sql_file(name: str) -> str:
    return (resources.files(__package__) / name).read_text(encoding="utf-8")


def expand(text: str, namespace: str) -> str:
    return (
        text.replace("{ns}", namespace)
        .replace("{channel}", channel(namespace))
        .replace("{columns}", COLUMNS)
        .replace("{j_columns}", J_COLUMNS)
        .replace("{null_columns}", NULL_COLUMNS)
        .replace("{values}", PLACEHOLDERS)
        .replace("{runtime_bucket}", RUNTIME_BUCKET)
    )


def _runtime_bucket() -> str:
    """The label of the run-time bucket of a column ``runtime`` (inspection.bucket_of)."""
    cases = " ".join(
        f"WHEN runtime <= {upper!r} THEN '{bucket_label(upper)}'"
        for upper in RUNTIME_BUCKETS
        if not math.isinf(upper)
    )
    return f"CASE {cases} ELSE '+Inf' END"


RUNTIME_BUCKET = _runtime_bucket()


def channel(namespace: str) -> str:
    return f"{namespace}_events"


def queries(namespace: str) -> Mapping[str, str]:
    """The named statements of queries.sql, for one namespace."""
    parts: dict[str, str] = {}
    statements: dict[str, str] = {}
    for section in re.split(r"^-- (?=(?:name|part): )", sql_file("queries.sql"), flags=re.M)[1:]:
        head, _, body = section.partition("\n")
        kind, _, name = head.partition(": ")
        (parts if kind == "part" else statements)[name.strip()] = body.strip()
    out: dict[str, str] = {}
    for name, body in statements.items():
        for part, text in parts.items():
            body = body.replace(f"{{part:{part}}}", text)
        out[name] = expand(body, namespace)
    return out


def socket_options(wait_seconds: float | None, given: Collection[str]) -> dict[str, Any]:
    """libpq's options for a connection whose waits are bounded to ``wait_seconds``: a
    connect that gives up as soon (libpq counts whole seconds, 2 at least), TCP keepalives so
    that an idle connection to a vanished host is noticed (not after the system's two hours),
    and ``tcp_user_timeout`` so that data the peer never acknowledges (a cable pulled, a link
    down) breaks the connection within the bound rather than after minutes of retransmits.
    Those ``given`` in the URL are the user's, and left as they are."""
    bound = WAIT_SECONDS if wait_seconds is None else wait_seconds
    ours = {
        "connect_timeout": max(2, math.ceil(min(bound, 10.0))),
        "keepalives": 1,
        "keepalives_idle": max(1, min(int(bound / 2), 30)),
        "keepalives_interval": max(1, min(int(bound / 6), 5)),
        "keepalives_count": 3,
        "tcp_user_timeout": max(1000, int(bound * 1000)),
    }
    return {name: value for name, value in ours.items() if name not in given}


def is_disconnect(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    """A lost or refused connection, worth another try; not an error in the statement."""
    if isinstance(exc, PoolTimeout | psycopg.errors.IdleInTransactionSessionTimeout):
        return True  # the latter: the server ended a session it took for a frozen worker's
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return conn is None or conn.broken or conn.closed


class WaitBound:
    """How long one wait for the server may last (None: without end), shared by a
    ``Database`` and its connections, so that a new bound reaches the idle ones too."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds


class NoReply(psycopg.OperationalError):
    """The server did not answer within the bound: frozen, overloaded or cut off."""


class BoundedConnection(psycopg.Connection[Any]):
    """A connection none of whose waits for the server lasts past its ``bound``.

    psycopg waits for the server's reply in Python, with no read timeout of its own, and a
    frozen server (SIGSTOP, a VM paused) or a black-holed network still acknowledges TCP
    segments in the kernel, so neither keepalives nor ``tcp_user_timeout`` notice; a
    ``statement_timeout`` is the server's and a frozen server runs nothing. So the bound is
    the client's: a wait that passes it closes the connection, whose state in the middle of
    the protocol is unknown, and raises NoReply, which ``Database.run`` takes as a lost
    connection (the pool drops it). The server may still run what it had been sent:
    every operation is safe to run again (see ``Database``).
    """

    bound = WaitBound(None)  # set by Database when it makes the connection

    def wait(self, gen: PQGen[T], interval: float = 0.1, timeout: float | None = None) -> T:
        bound = self.bound.seconds
        if bound is None or timeout is not None:
            # the caller's own timeout: LISTEN's wait for notifications, which may be long
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, bound)
        except psycopg.errors._WaitTimeout as exc:  # Connection.wait's, since psycopg 3.3.6
            self.pgconn.finish()
            raise NoReply(
                f"no reply from the server within {bound:g} s: it is frozen, overloaded or "
                "cut off; the connection was closed"
            ) from exc


class Database:
    """A pool of connections (psycopg_pool), opened lazily and again in a forked child.

    ``run(fn)`` lends ``fn`` a connection and retries it when the connection was lost (the
    server restarted, the network blinked) for up to ``retry_seconds``, then raises
    BackendUnavailable. Every operation of the backend is safe to run again: inserts skip an
    id already stored, and writes about a running job are fenced by its token.
    """

    def __init__(
        self,
        url: str,
        *,
        retry_seconds: float = RETRY_SECONDS,
        wait_seconds: float | None = WAIT_SECONDS,
    ) -> None:
        self.options = parse_url(url)
        self.url = self.options.conninfo
        self.retry_seconds = retry_seconds
        #: the bound of every wait for the server (BoundedConnection); None: none
        self.wait_bound = WaitBound(wait_seconds)
        self._pool: ConnectionPool[BoundedConnection] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._abandoned: list[object] = []  # a forked child's inherited pools: never touched
        self._given = frozenset(conninfo_to_dict(self.url))  # libpq's options in the URL
        self._socket_options = socket_options(wait_seconds, self._given)

    def pool(self) -> ConnectionPool[BoundedConnection]:
        if self._pid != os.getpid():
            with self._lock:
                if self._pool is not None:
                    self._abandoned.append(self._pool)  # the parent's sockets, not ours
                self._pool = None
                self._pid = os.getpid()
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ConnectionPool(
                        self.url,
                        connection_class=BoundedConnection,
                        configure=self._bind,
                        kwargs={
                            "autocommit": True,
                            "prepare_threshold": 5 if self.options.prepared else None,
                            **self._socket_options,
                        },
                        min_size=1,
                        max_size=POOL_MAX_SIZE,
                        timeout=self.retry_seconds,
                        name="conveyor",
                        open=True,
                    )
        return self._pool

    def set_call_timeout(self, seconds: float) -> None:
        """Bound every call (its retries included) to about ``seconds``: the retry budget,
        each wait for the server (BoundedConnection), and on each connection the kernel's
        ``tcp_user_timeout`` with keepalives, so that a call into a frozen server or a cut
        network fails instead of hanging on a socket that never answers."""
        self.retry_seconds = seconds
        self.wait_bound.seconds = seconds
        self._socket_options = socket_options(seconds, self._given)
        if "options" not in self._given and self.options.prepared:
            # A worker frozen or cut off in the middle of a transaction would keep its row
            # locks (the store-wide heartbeat record's among them, which every worker's
            # heartbeat takes) until the server heard of it: hours, behind a black hole. Its
            # own transactions never idle for long (microseconds between round trips, but a
            # loaded machine may pause a thread for a good part of a second: 0.5 s killed
            # live ones), so the server may end one idle for as long as the bound.
            # Not behind PgBouncer (``prepared=off``), which refuses a startup ``options``.
            ms = max(1000, int(seconds * 1000))
            self._socket_options["options"] = f"-c idle_in_transaction_session_timeout={ms}"
        with self._lock:
            old, self._pool = self._pool, None
        if old is not None and self._pid == os.getpid():
            # its connections (opening the store made one) lack the options: new ones have them
            old.close()

    def connect(self, **kwargs: Any) -> BoundedConnection:
        """A connection of its own, outside the pool (the listener's), bounded as the pool's."""
        conn = BoundedConnection.connect(
            self.url, autocommit=True, **{**self._socket_options, **kwargs}
        )
        self._bind(conn)
        return conn

    def _bind(self, conn: BoundedConnection) -> None:
        conn.bound = self.wait_bound

    def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            conn: BoundedConnection | None = None
            try:
                with self.pool().connection() as conn:
                    return fn(conn)
            except (
                psycopg.OperationalError,
                psycopg.errors.IdleInTransactionSessionTimeout,
                PoolTimeout,
            ) as exc:
                if not is_disconnect(exc, conn):
                    raise
                if self._pool is not None and not isinstance(exc, NoReply):
                    # drop the other connections a restart broke (quick: they fail at once);
                    # not after NoReply, where each idle one would wait out the bound
                    self._pool.check()
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailable(
                        f"PostgreSQL at {safe_url(self.url)} did not answer for "
                        f"{self.retry_seconds:g} s ({exc}); is the server running?"
                    ) from exc
                log.debug("lost the connection (%s); again in %.2f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def try_once(self, fn: Callable[[psycopg.Connection[Any]], object]) -> bool:
        """Run ``fn`` once if a connection is at hand within a second; False if not."""
        try:
            with self.pool().connection(timeout=1.0) as conn:
                fn(conn)
        except (psycopg.Error, PoolTimeout):
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None
