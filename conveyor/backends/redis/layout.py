"""The layout version of a namespace's keys, and the steps from each version to the next.

``{namespace}:layout`` holds the version of the key layout (backend.py's docstring) that the
namespace's keys have; the hash tag keeps it in the namespace's Cluster slot, beside the keys
it describes. The first time a process reaches the server (``Connection``'s ``on_connect``)
``check`` reads it, in one script:

- no version and no key of the namespace: a new store, stamped with this conveyor's version;
- no version but keys of the namespace: a store written before versions existed, whose keys
  have layout 1, the layout of that time; stamped 1, then migrated like any older store;
- an older version: the steps to ours run when every one is safe to run unattended (quick,
  additive), else the store is refused until ``conveyor migrate`` (``migrate``) runs them;
- a newer version: refused with one line, before anything is written.

A step is a function of the client and the prefix. It must be idempotent, as processes that
open an older store at once may run it at once; the version moves on only from the version
before it (``_ADVANCE``), so it never moves back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import AskError

from conveyor.backends.redis.connection import Client, Connection, safe_url
from conveyor.errors import ConfigurationError

#: the layout this conveyor reads and writes
LAYOUT_VERSION = 2
#: the layout of a store written before layout versions existed
UNVERSIONED = 1
#: keys that a namespace that ever held a job, a worker, a schedule or a limit keeps
IN_USE = (
    "all", "token", "counts", "events", "event_id", "stats", "running", "purge", "workers",
    "workers_seen", "schedules", "limits", "beats",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Step:
    """From ``version - 1`` to ``version``."""

    version: int
    run: Callable[[Client, str], None]  # (client, prefix); idempotent
    safe: bool  # may run when a process opens the store (additive and quick)


def _drop_all(client: Client, prefix: str) -> None:
    """Layout 2 keeps no index of every job (``all``): a retried enqueue is told by the job's
    hash, and an unfiltered listing merges the queues' ``byqueue`` indexes. UNLINK frees the
    set off the server's main thread. Safe: layout 2 reads nothing from it; a process of
    layout 1 still running lists fewer jobs unfiltered until it is upgraded."""
    client.unlink(prefix + "all")


#: every step after layout 1, in order
STEPS: tuple[Step, ...] = (Step(2, _drop_all, safe=True),)


class LayoutTooNew(ConfigurationError):
    """The store was written by a newer conveyor."""


class LayoutTooOld(ConfigurationError):
    """The store needs ``conveyor migrate`` before this conveyor can use it."""


# KEYS[1] the version key, KEYS[2..] the keys of a namespace in use; ARGV[1] the version of a
# new store, ARGV[2] that of a store from before versions. Returns {before, now}: before is 0
# for a new store; now is what the key holds (as stored: the caller checks it is a number).
_READ = """
local v = redis.call('GET', KEYS[1])
if v then return {v, v} end
if redis.call('EXISTS', unpack(KEYS, 2)) > 0 then
  redis.call('SET', KEYS[1], ARGV[2])
  return {ARGV[2], ARGV[2]}
end
redis.call('SET', KEYS[1], ARGV[1])
return {'0', ARGV[1]}
"""

# KEYS[1] the version key; ARGV[1] the version a step started from, ARGV[2] the one it made
_ADVANCE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
"""


def _number(raw: Any, key: str, where: str) -> int:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    if not text.isdigit():
        raise ConfigurationError(
            f"the Redis at {where} holds {text!r} in {key}, which is no layout version: the "
            "key belongs to conveyor; delete it if something else wrote it there"
        )
    return int(text)


def _read(client: Client, prefix: str, where: str) -> tuple[int, int]:
    """(version before, version now), stamping a store that had none."""
    keys = [prefix + "layout", *(prefix + name for name in IN_USE)]
    before, now = client.eval(_READ, len(keys), *keys, LAYOUT_VERSION, UNVERSIONED)
    key = prefix + "layout"
    return _number(before, key, where), _number(now, key, where)


def _refuse_newer(version: int, prefix: str, where: str) -> None:
    if version > LAYOUT_VERSION:
        raise LayoutTooNew(
            f"the store at {where} (namespace {prefix[1:-2]!r}) has layout version {version}, "
            f"newer than this conveyor knows ({LAYOUT_VERSION}): upgrade conveyor"
        )


def _apply(client: Client, prefix: str, version: int, where: str) -> int:
    for step in STEPS:
        if step.version > version:
            step.run(client, prefix)
            raw = client.eval(_ADVANCE, 1, prefix + "layout", step.version - 1, step.version)
            version = _number(raw, prefix + "layout", where)
    return version


def check(client: Client, prefix: str, where: str) -> None:
    """Make the namespace's keys ready for this conveyor, or refuse them in one line."""
    try:
        _, now = _read(client, prefix, where)
    except AskError:
        # a plain client on a Cluster node that does not own the namespace: no keyed call
        # gets through, each says why (``Connection.call``), so there is nothing to check
        return
    _refuse_newer(now, prefix, where)
    pending = [step for step in STEPS if step.version > now]
    if any(not step.safe for step in pending):
        raise LayoutTooOld(
            f"the store at {where} (namespace {prefix[1:-2]!r}) has layout version {now}; "
            f"this conveyor needs {LAYOUT_VERSION}: run `conveyor migrate` first"
        )
    _apply(client, prefix, now, where)


def migrate(client: Client, prefix: str, where: str) -> tuple[int, int]:
    """Every step to this conveyor's layout, safe or not: (version before, after)."""
    before, now = _read(client, prefix, where)
    _refuse_newer(now, prefix, where)
    return before, _apply(client, prefix, now, where)


def migrate_store(url: str, prefix: str) -> tuple[int, int]:
    """``conveyor migrate``, on a connection of its own that checks nothing first."""
    connection = Connection(url, prefix)
    try:
        return connection.call(lambda client: migrate(client, prefix, safe_url(url)))
    finally:
        connection.close()
