"""The Redis backend's change feed and counters: ``read_events`` reads the capped stream
``events`` that every script appends one entry to (``common.lua``, ``notify``), and waits on it
with XREAD BLOCK; ``job_stats`` reads the ``stats`` hash. A mixin of ``RedisBackend``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from conveyor.backends.redis.connection import Connection
from conveyor.inspection import Event, StoreStats, TaskStats, make_event
from conveyor.job import Progress

MAX_BLOCK_SECONDS = 1.0  # one XREAD BLOCK, well within the socket timeout; then look again
SEP = "\x1f"  # between the parts of a `stats` field (common.lua SEP)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_entries(entries: Any, after: int) -> list[Event]:
    """Stream entries ``<last id>-0`` holding flat id, task, state, progress quadruples: the
    events after ``after``, oldest first."""
    out: list[Event] = []
    for entry_id, fields in entries:
        last = int(_text(entry_id).partition("-")[0])
        values = {_text(k): _text(v) for k, v in fields.items()}
        flat = json.loads(values["e"])
        at = float(values["at"])
        first = last - len(flat) // 4 + 1
        for i in range(0, len(flat), 4):
            event_id = first + i // 4
            if event_id > after:
                job_id, task, state, progress = flat[i : i + 4]
                parsed = Progress.from_json(json.loads(progress)) if progress else None
                out.append(make_event(event_id, job_id, task, state, parsed, at))
    return out


class Feed:
    _prefix: str
    _connection: Connection
    _call: Callable[..., Any]
    _run: Callable[..., Any]

    def read_events(self, after: int, *, limit: int = 1000, timeout: float = 0.0) -> list[Event]:
        key = f"{self._prefix}events"
        # entries hold one event or more: `limit` entries hold at least `limit` events
        entries = self._call(lambda c: c.xrange(key, min=f"{after + 1}-0", count=limit))
        events = decode_entries(entries, after)
        deadline = time.monotonic() + timeout
        while not events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            block = max(1, int(min(remaining, MAX_BLOCK_SECONDS) * 1000))
            reply = self._call(
                lambda c, block=block: c.xread({key: f"{after}-0"}, count=limit, block=block)
            )
            for _, stream_entries in reply or []:
                events += decode_entries(stream_entries, after)
        return events[:limit]

    def last_event_id(self) -> int:
        raw = self._call(lambda c: c.get(f"{self._prefix}event_id"))
        return 0 if raw is None else int(raw)

    def job_stats(self, *, now: float) -> StoreStats:
        flat, oldest = self._run("stats")
        tasks: dict[str, TaskStats] = {}
        for i in range(0, len(flat), 2):
            task, kind, label = _text(flat[i]).split(SEP)
            stats = tasks.setdefault(task, TaskStats(task))
            value = _text(flat[i + 1])
            if kind in ("succeeded", "failed"):
                upper = float(label)
                stats.runtime[upper] = stats.runtime.get(upper, 0) + int(value)
                setattr(stats, kind, getattr(stats, kind) + int(value))
            elif kind == "sum":
                stats.runtime_sum = float(value)
            elif kind == "retries":
                stats.retries = int(value)
            elif kind == "error":
                stats.failures[label] = int(value)
        ready = {_text(oldest[i]): float(oldest[i + 1]) for i in range(0, len(oldest), 2)}
        return StoreStats(tasks, ready)
