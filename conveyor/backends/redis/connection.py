"""Reaching Redis: one server or a Redis Cluster, and the one retry policy every round trip
goes through (the Lua scripts: ``scripts.py``).

A plain ``redis://`` (``rediss://``, ``valkey://``, ``valkeys://``) URL asks the server at the
first call whether it is a Cluster node (``INFO cluster``, once per backend) and takes the
Cluster client if so, so the URL an app already has keeps working when its server becomes a
Cluster. ``redis+cluster://host:port/`` (also ``rediss+``, ``valkey+`` and
``valkeys+cluster://``) or ``?cluster=true`` names a Cluster without asking;
``?cluster=false`` and ``unix://`` a single server. The node in a Cluster URL is only where the
client learns the topology. Every key of a namespace carries the hash tag ``{namespace}`` and
every script gets the prefix as KEYS[1], so redis-py routes each script by KEYS[1] to the node
that owns the namespace's slot and follows MOVED there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry

from conveyor.backends.redis.held import HeldConnections
from conveyor.backends.redis.scripts import Execute, Scripts
from conveyor.errors import BackendUnavailable, ConfigurationError

T = TypeVar("T")
Client = redis.Redis | RedisCluster

_PLAIN = {"valkey": "redis", "valkeys": "rediss"}
_CLUSTER = {
    "redis+cluster": "redis",
    "rediss+cluster": "rediss",
    "valkey+cluster": "redis",
    "valkeys+cluster": "rediss",
}
_YES, _NO = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
# A lost node, a failover in progress (CLUSTERDOWN, TRYAGAIN), or no node reachable while
# the client refreshes its map of slots: all pass, so all are retried like a lost connection.
RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ReadOnlyError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
)


class Target(NamedTuple):
    """What a URL names: the URL redis-py understands, whether it is a Cluster (None: ask the
    server at the first call), and the database number."""

    url: str
    cluster: bool | None
    db: str


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value.lower() for name, value in query if name == "cluster"]
    cluster: bool | None = True if scheme in _CLUSTER else None
    for flag in flags:
        if flag not in _YES + _NO:
            raise ConfigurationError(f"cluster={flag!r} in {safe_url(url)!r}: use true or false")
        if scheme in _CLUSTER and flag in _NO:
            raise ConfigurationError(f"{scheme}:// contradicts cluster={flag} in {safe_url(url)!r}")
        cluster = cluster or flag in _YES
    target = _CLUSTER.get(scheme) or _PLAIN.get(scheme, scheme)
    if target not in ("redis", "rediss"):
        if cluster:
            raise ConfigurationError(f"a Redis Cluster is reached over TCP, not {scheme}://")
        cluster = False  # a Unix socket: the Cluster client could not use it anyway
    db = parts.path.strip("/") or dict(query).get("db", "0")
    if cluster:
        check_cluster_db(url, db)
    # string surgery, not urlunsplit, which would turn unix:///path into unix:/path
    rest = url.partition("://")[2]
    if flags:  # redis-py would pass an unknown query option on to its connections
        rest = rest.partition("?")[0]
        kept = urlencode([(k, v) for k, v in query if k != "cluster"])
        rest += f"?{kept}" if kept else ""
    return Target(f"{target}://{rest}", cluster, db)


def check_cluster_db(url: str, db: str, *, detected: bool = False) -> None:
    if db == "0":
        return
    if detected:
        found = f"Redis at {safe_url(url)} is a Redis Cluster node, and a Cluster"
    else:
        found = f"{safe_url(url)!r} names a Redis Cluster, which"
    raise ConfigurationError(
        f"{found} has only database 0, not {db!r}: use /0 or no database in the URL"
    )


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _unchosen(*command: Any) -> Any:
    raise AssertionError("a script ran before the client was chosen")


def _pools(client: Client) -> list[Any]:
    """The connection pools of a client: one, or one per Cluster node it knows."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes()  # type: ignore[no-untyped-call]
        return [n.redis_connection.connection_pool for n in nodes if n.redis_connection]
    return [client.connection_pool]


class Connection:
    """The client of one server or of a Cluster, for one namespace (``prefix``).

    The client is chosen at the first call, under the retry policy, so an app can be created
    while the servers are still starting: a Cluster client learns the topology when it is
    made, and a plain ``redis://`` URL first asks the server whether it is a Cluster node.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        retry_seconds: float = 5.0,
        on_connect: Callable[[Client], object] | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        #: run once with the client before any call uses it (the layout check: layout.py)
        self.on_connect = on_connect
        self._target = parse_url(url)
        self._is_cluster = self._target.cluster  # None until the server is asked
        self._options: dict[str, Any] = {
            "socket_timeout": 5.0,
            "socket_connect_timeout": 2.0,
            # a connection idle this long is PINGed before it is used again
            "health_check_interval": 30,
            # one retry policy, ours (``call``): bounded in time, then BackendUnavailable
            "retry": Retry(NoBackoff(), 0),
        }
        self._lock = threading.Lock()
        self._client: Client | None = None
        # replaced when the client turns out to be a Cluster's (see ``_choose``)
        self._scripts = Scripts("PUBLISH", functions=True)
        # made now (it connects only when used) so that a bad URL fails at construction
        self._plain: redis.Redis | None = None
        self._held: HeldConnections | None = None
        if self._target.cluster is not True:
            try:
                self._plain = redis.Redis.from_url(self._target.url, **self._options)
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis URL {safe_url(url)!r}: {exc}") from exc
            self._held = HeldConnections(self._plain.connection_pool)
        # how the scripts' commands go: set with the client (see ``_choose``)
        self._execute: Execute = self._held.execute if self._held else _unchosen

    @property
    def client(self) -> Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                client = self._choose()
                if self.on_connect is not None:
                    self.on_connect(client)
                self._client = client
            return self._client

    @property
    def cluster(self) -> bool:
        """True when the client is a Cluster client (this may make the first call)."""
        return self.call(lambda client: isinstance(client, RedisCluster))

    @property
    def sharded(self) -> bool:
        """Whether the channels are sharded: on a Cluster, classic PUBLISH is copied over the
        cluster bus to every node; sharded pub/sub (Redis 7, Valkey 7.2) stays within the
        shard that owns the namespace."""
        return isinstance(self.client, RedisCluster)

    @property
    def scripts(self) -> Scripts:
        """The scripts, which publish as the client's kind of server needs."""
        self.client  # noqa: B018 - chooses the client, which chooses the scripts
        return self._scripts

    def _choose(self) -> Client:
        """The client for the URL; on a plain URL, one ``INFO cluster`` decides. Called under
        the lock, once it succeeds; what it learns is kept, so a retry asks no more."""
        if self._is_cluster is None:
            assert self._plain is not None
            self._is_cluster = self._asks_cluster(self._plain)
        client: Client
        if self._is_cluster:
            detected = self._target.cluster is None
            check_cluster_db(self.url, self._target.db, detected=detected)
            client = self._connect_cluster()
            if self._plain is not None:
                self._plain.close()
                self._plain = None
                self._held = None  # it never held one: nothing ran before the choice
            self._execute = client.execute_command
        else:
            assert self._plain is not None
            client = self._plain
        if self._is_cluster:
            self._scripts = Scripts("SPUBLISH", functions=False)
        return client

    def _asks_cluster(self, plain: redis.Redis) -> bool:
        probe = plain
        if self._target.db != "0":
            # a Cluster node refuses SELECT of any other database before INFO could answer
            pool = plain.connection_pool
            kwargs = {**pool.connection_kwargs, "db": 0}
            probe = redis.Redis.from_pool(redis.ConnectionPool(pool.connection_class, **kwargs))
        try:
            info: Any = probe.info("cluster")
        except redis.ResponseError:
            # INFO refused (an ACL without it, a managed server): take the server as single;
            # if it is a Cluster node after all, its MOVED reply says so (see ``call``)
            return False
        finally:
            if probe is not plain:
                probe.close()
        return str(info.get("cluster_enabled", 0)) == "1"

    def _connect_cluster(self) -> RedisCluster:
        try:
            return RedisCluster.from_url(self._target.url, **self._options)
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL {safe_url(self.url)!r}: {exc}") from exc
        except RedisClusterException as exc:
            if isinstance(exc.__cause__, redis.AuthenticationError):
                # a wrong password: ``call`` fails at once rather than retrying
                raise redis.AuthenticationError(str(exc.__cause__)) from exc
            if "cluster mode is not enabled" in str(exc).lower():
                raise BackendUnavailable(
                    f"Redis at {safe_url(self.url)} is not a Cluster node (cluster mode is "
                    "not enabled); use redis:// for a single server"
                ) from exc
            raise

    def node(self) -> redis.Redis:
        """The client of the one server, or of the Cluster node that serves the namespace
        now (as far as the client's map of slots knows)."""
        client = self.client
        if isinstance(client, RedisCluster):
            node = client.get_node_from_key(self.prefix)  # type: ignore[no-untyped-call]
            return client.get_redis_connection(node)
        return client

    def locate(self) -> None:
        """Bring the map of slots up to date: one keyed read through the Cluster client
        follows MOVED or, if the node is gone, asks the others."""
        client = self.client
        if isinstance(client, RedisCluster):
            client.exists(self.prefix + "token")

    def publish(self, channel: str, message: str) -> None:
        client = self.client
        if isinstance(client, RedisCluster):
            client.spublish(channel, message)
        else:
            client.publish(channel, message)

    def call(self, fn: Callable[[Client], T]) -> T:
        """Run one round trip, retrying a lost connection with backoff for
        ``retry_seconds``, then BackendUnavailable."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return fn(self.client)
            except redis.AuthenticationError as exc:
                raise BackendUnavailable(
                    f"Redis at {safe_url(self.url)} refused the password in the URL: {exc}"
                ) from exc
            except AskError as exc:
                # a plain client on a Cluster node, whose slot lives elsewhere: MOVED or ASK
                reply = "MOVED" if isinstance(exc, MovedError) else "ASK"
                raise ConfigurationError(
                    f"Redis at {safe_url(self.url)} is a Redis Cluster node: it sent the keys "
                    f"of this namespace to {exc.host}:{exc.port} ({reply}, slot {exc.slot_id}), "
                    "but the URL asks for a single server (cluster=false, or a Unix socket). "
                    "Use redis://host:port/ without cluster=false, which detects a Cluster, "
                    "or redis+cluster://host:port/."
                ) from exc
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailable(
                        f"Redis at {safe_url(self.url)} did not answer for "
                        f"{self.retry_seconds:g} s ({exc}); is the server running?"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def execute(self, *command: Any) -> Any:
        """One command, once (no retry), as the scripts send theirs: on one server over this
        thread's held connection. Call it after a script, which chooses the client."""
        return self._execute(*command)

    def run(self, name: str, *args: Any) -> Any:
        # the client is chosen (and with it the scripts) before the lambda runs
        return self.call(lambda _: self._scripts.run(self._execute, name, self.prefix, args))

    @property
    def socket_timeout(self) -> float:
        """How long one read or write on a connection may wait."""
        return float(self._options["socket_timeout"])

    def bound(self, seconds: float) -> None:
        """Bound every later call to about ``seconds``: the socket timeouts of new and pooled
        connections, and how long ``call`` retries."""
        timeout = min(self.socket_timeout, seconds)
        connect = min(float(self._options["socket_connect_timeout"]), timeout)
        timeouts = {"socket_timeout": timeout, "socket_connect_timeout": connect}
        self._options.update(timeouts)
        self.retry_seconds = min(self.retry_seconds, seconds)
        with self._lock:
            clients = [c for c in (self._client, self._plain) if c is not None]
        for client in clients:
            for pool in _pools(client):
                pool.connection_kwargs.update(timeouts)
                for conn in [*pool._available_connections, *pool._in_use_connections]:
                    conn.socket_timeout, conn.socket_connect_timeout = timeout, connect
                    sock = conn._sock
                    if sock is not None:
                        sock.settimeout(timeout)
        if self._held is not None:
            self._held.set_timeouts(timeout, connect)

    def run_built(self, name: str, build: Callable[[], list[Any]]) -> Any:
        """``run`` with arguments made anew for every attempt."""
        return self.call(
            lambda _: self._scripts.run(self._execute, name, self.prefix, tuple(build()))
        )

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._plain is not None and self._plain is not self._client:
                self._plain.close()
