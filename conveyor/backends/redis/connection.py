"""Reaching Redis: one server or a Redis Cluster, chosen by the URL; the Lua scripts; and the
one retry policy every round trip goes through.

``redis+cluster://host:port/`` (also ``rediss+``, ``valkey+`` and ``valkeys+cluster://``) or
``?cluster=true`` on a ``redis://`` URL selects a Cluster: the node in the URL is only where
the client learns the topology. Every key of a namespace carries the hash tag ``{namespace}``
and every script gets the prefix as KEYS[1], so redis-py routes each script by KEYS[1] to the
node that owns the namespace's slot and follows MOVED there.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ClusterError, NoScriptError, RedisClusterException, TryAgainError
from redis.retry import Retry

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
SCRIPTS = [
    *("enqueue", "claim", "heartbeat", "progress", "finish", "release", "recover", "sweep"),
    *("list", "cancel", "retry", "purge_queue", "record_due", "schedules", "probe"),
]


def parse_url(url: str) -> tuple[str, bool]:
    """The URL redis-py understands, and whether it names a Cluster."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    cluster = scheme in _CLUSTER
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value.lower() for name, value in query if name == "cluster"]
    for flag in flags:
        if flag not in _YES + _NO:
            raise ConfigurationError(f"cluster={flag!r} in {safe_url(url)!r}: use true or false")
        if scheme in _CLUSTER and flag in _NO:
            raise ConfigurationError(f"{scheme}:// contradicts cluster={flag} in {safe_url(url)!r}")
        cluster = cluster or flag in _YES
    target = _CLUSTER.get(scheme) or _PLAIN.get(scheme, scheme)
    if cluster:
        if target not in ("redis", "rediss"):
            raise ConfigurationError(f"a Redis Cluster is reached over TCP, not {scheme}://")
        db = parts.path.strip("/") or dict(query).get("db", "0")
        if db != "0":
            raise ConfigurationError(
                f"Redis Cluster has only database 0, not {db!r} in {safe_url(url)!r}"
            )
    # string surgery, not urlunsplit, which would turn unix:///path into unix:/path
    rest = url.partition("://")[2]
    if flags:  # redis-py would pass an unknown query option on to its connections
        rest = rest.partition("?")[0]
        kept = urlencode([(k, v) for k, v in query if k != "cluster"])
        rest += f"?{kept}" if kept else ""
    return f"{target}://{rest}", cluster


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class LuaScript:
    """One script, ``common.lua`` in front of its own file. EVALSHA first; on NOSCRIPT (a
    restarted server, a new primary after a failover, a slot moved to another node) EVAL,
    which redis-py routes by KEYS[1] like EVALSHA, and which caches the script on exactly the
    node that runs it: no SCRIPT LOAD on every primary, so a node that is down elsewhere in
    the Cluster never stands in the way."""

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()

    def __call__(self, client: Client, prefix: str, args: tuple[Any, ...]) -> Any:
        try:
            return client.evalsha(self.sha, 1, prefix, *args)
        except NoScriptError:
            return client.eval(self.body, 1, prefix, *args)


def load_scripts(publish: str) -> dict[str, LuaScript]:
    folder = resources.files(__package__)
    common = f"local PUBLISH = '{publish}'\n" + (folder / "common.lua").read_text()
    return {
        name: LuaScript(name, common + (folder / f"{name}.lua").read_text()) for name in SCRIPTS
    }


class Connection:
    """The client of one server or of a Cluster, for one namespace (``prefix``).

    A Cluster client learns the topology when it is made, so it is made at the first call,
    under the retry policy, like a plain client's first connection: an app can be created
    while the servers are still starting.
    """

    def __init__(self, url: str, prefix: str, *, retry_seconds: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self._redis_url, self.cluster = parse_url(url)
        self._options: dict[str, Any] = {
            "socket_timeout": 5.0,
            "socket_connect_timeout": 2.0,
            # one retry policy, ours (``call``): bounded in time, then BackendUnavailable
            "retry": Retry(NoBackoff(), 0),
        }
        self._lock = threading.Lock()
        self._client: Client | None = None
        if not self.cluster:
            try:
                self._client = redis.Redis.from_url(self._redis_url, **self._options)
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis URL {safe_url(url)!r}: {exc}") from exc
        # Classic PUBLISH in a Cluster is copied over the cluster bus to every node; sharded
        # pub/sub (Redis 7, Valkey 7.2) stays within the shard that owns the namespace.
        self.sharded = self.cluster
        self.scripts = load_scripts("SPUBLISH" if self.sharded else "PUBLISH")

    @property
    def client(self) -> Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._connect_cluster()
            return self._client

    def _connect_cluster(self) -> RedisCluster:
        try:
            return RedisCluster.from_url(self._redis_url, **self._options)
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
        if self.sharded:
            self.client.spublish(channel, message)
        else:
            self.client.publish(channel, message)

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
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailable(
                        f"Redis at {safe_url(self.url)} did not answer for "
                        f"{self.retry_seconds:g} s ({exc}); is the server running?"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def run(self, name: str, *args: Any) -> Any:
        script = self.scripts[name]
        return self.call(lambda client: script(client, self.prefix, args))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
