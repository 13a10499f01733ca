"""Cluster-wide limits as a model: what a limit is, how ``"10/m"`` reads, what a job counts
against. Pure: the stores enforce limits at claim time (backends/), this module only says
what they enforce.

A *limit* has a name, an optional rate (starts per period, over a sliding window) and an
optional concurrency (jobs running at once). A task's own ``rate_limit`` / ``concurrency``
are a limit named ``task:<task name>``; ``app.limit(name, ...)`` declares shared ones. With
``limit_key``, every limit a task counts against applies per key: a job carries its
*refs*, ``(limit name, key)`` pairs, in ``meta["limits"]``, computed when it is enqueued.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigurationError

#: rate units: seconds per period
PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: the longest period a rate may have, so stores know how long to keep starts
MAX_PERIOD_SECONDS = max(PERIODS.values())
#: the prefix of a task's own limit; ``app.limit`` names may not start with it
TASK_PREFIX = "task:"
#: the key of a limit that is not split by ``limit_key``
NO_KEY = ""
#: where a job carries its refs
META_FIELD = "limits"

_RATE = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*")
_UNITS = {1.0: "s", 60.0: "m", 3600.0: "h"}

#: (limit name, key): one counter a job counts against
LimitRef = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts in any window of ``per_seconds``."""

    count: int
    per_seconds: float

    def __str__(self) -> str:
        return f"{self.count}/{_UNITS.get(self.per_seconds, f'{self.per_seconds:g}s')}"


def parse_rate(text: str | Rate, *, owner: str) -> Rate:
    """``"10/s"``, ``"50/m"``, ``"100/h"``; ``owner`` names what the rate belongs to."""
    if isinstance(text, Rate):
        return text
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigurationError(
            f'{owner}: rate {text!r} is not a rate; write "N/s", "N/m" or "N/h" '
            '(e.g. "10/m": ten starts per minute)'
        )
    count = int(match.group(1))
    if count < 1:
        raise ConfigurationError(f"{owner}: rate {text!r} allows no start; use 1 or more")
    return Rate(count, PERIODS[match.group(2)])


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A limit as the store keeps it: its name, its rate and its concurrency (None: none)."""

    name: str
    rate: Rate | None = None
    concurrency: int | None = None

    def to_json(self) -> dict[str, Any]:
        rate = self.rate
        return {
            "rate_count": None if rate is None else rate.count,
            "rate_seconds": None if rate is None else rate.per_seconds,
            "concurrency": self.concurrency,
        }

    @classmethod
    def from_json(cls, name: str, raw: Mapping[str, Any]) -> LimitSpec:
        count, seconds = raw.get("rate_count"), raw.get("rate_seconds")
        rate = None if count is None else Rate(int(count), float(seconds or 1.0))
        concurrency = raw.get("concurrency")
        return cls(name, rate, None if concurrency is None else int(concurrency))


def make_limit(
    name: str, *, rate: str | Rate | None = None, concurrency: int | None = None
) -> LimitSpec:
    """A validated limit; the errors say which value is wrong and why."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ConfigurationError(f"a limit needs a non-empty, printable name, not {name!r}")
    owner = f"limit {name!r}"
    parsed = None if rate is None else parse_rate(rate, owner=owner)
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ConfigurationError(
            f"{owner}: concurrency must be a whole number of 1 or more, not {concurrency!r}"
        )
    return LimitSpec(name, parsed, concurrency)


def shared_limit(
    name: str, *, rate: str | Rate | None = None, concurrency: int | None = None
) -> LimitSpec:
    """A limit declared with ``app.limit``: as ``make_limit``, and it must limit something
    and keep off the names of tasks' own limits."""
    if isinstance(name, str) and name.startswith(TASK_PREFIX):
        raise ConfigurationError(
            f"limit {name!r}: names starting with {TASK_PREFIX!r} belong to tasks' own "
            "rate_limit / concurrency; choose another name"
        )
    if rate is None and concurrency is None:
        raise ConfigurationError(f"limit {name!r}: give rate=..., concurrency=... or both")
    return make_limit(name, rate=rate, concurrency=concurrency)


def task_limit(task: str, rate_limit: str | None, concurrency: int | None) -> LimitSpec | None:
    """A task's own limit, or None when it has neither a rate limit nor a concurrency."""
    if rate_limit is None and concurrency is None:
        return None
    try:
        return make_limit(TASK_PREFIX + task, rate=rate_limit, concurrency=concurrency)
    except ConfigurationError as exc:
        raise ConfigurationError(
            str(exc).replace(f"limit {TASK_PREFIX + task!r}", f"task {task!r}")
        ) from None


def limit_key_of(
    task: str, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> str:
    """The key a job's limits apply to: ``limit_key(*args, **kwargs)``, which must be a
    string; computed at enqueue, so a bad key fails at the call site."""
    key = fn(*args, **kwargs)
    if not isinstance(key, str):
        raise ConfigurationError(
            f"task {task!r}: limit_key returned {key!r}; it must return a string "
            '(e.g. f"user:{user_id}")'
        )
    return key


def job_refs(own: LimitSpec | None, shared: Sequence[str], key: str) -> list[list[str]]:
    """The refs a job carries in ``meta["limits"]``: its task's own limit, then the shared
    ones, each with the job's key. Lists, not tuples: they travel as JSON."""
    names = ([own.name] if own is not None else []) + list(shared)
    return [[name, key] for name in dict.fromkeys(names)]


def refs_of(meta: Mapping[str, Any]) -> list[LimitRef]:
    """The refs of a job from its meta; [] for a job without limits."""
    raw = meta.get(META_FIELD)
    return [(str(name), str(key)) for name, key in raw] if raw else []


@dataclass(frozen=True, slots=True)
class LimitUse:
    """The use of one key of a limit, now: jobs running and starts in the rate's window."""

    key: str
    running: int = 0
    started: int = 0


@dataclass(frozen=True, slots=True)
class LimitInfo:
    """A limit and its current use, per key (``app.limits()``, ``GET /api/limits``)."""

    name: str
    rate: str | None
    concurrency: int | None
    keys: tuple[LimitUse, ...] = ()

    @property
    def running(self) -> int:
        return sum(use.running for use in self.keys)

    @property
    def started(self) -> int:
        return sum(use.started for use in self.keys)


def limit_info(spec: LimitSpec, uses: Sequence[LimitUse]) -> LimitInfo:
    """A limit with the keys in use, busiest first; keys with nothing going on are left out."""
    live = sorted(
        (u for u in uses if u.running or u.started), key=lambda u: (-u.running, -u.started, u.key)
    )
    rate = None if spec.rate is None else str(spec.rate)
    return LimitInfo(spec.name, rate, spec.concurrency, tuple(live))


def free_permits(spec: LimitSpec, running: int, started: int) -> int:
    """How many more jobs one key of the limit admits now, given its live running jobs and
    its starts in the rate's window (a large number when nothing limits it)."""
    free = 1 << 30
    if spec.concurrency is not None:
        free = min(free, spec.concurrency - running)
    if spec.rate is not None:
        free = min(free, spec.rate.count - started)
    return max(free, 0)
