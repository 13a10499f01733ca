"""Job records to and from Redis hash fields.

Only fields that are set are stored; a missing field reads back as its default. Floats are
written with ``repr`` so they read back as the same double, and the scripts never print a
number with fewer than 17 digits, so times survive a trip through Lua exactly.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

from conveyor.job import ErrorInfo, JobRecord, Progress, State

_FLOATS = ("created_at", "ready_at", "result_ttl")
_OPTIONAL_FLOATS = (
    "expires_at",
    "started_at",
    "finished_at",
    "purge_at",
    "lease_expires_at",
)
_INTS = ("priority", "attempts", "failures", "crashes", "token")
_OPTIONAL_STRS = ("key", "unique_key", "worker")


def encode_record(record: JobRecord) -> list[str | bytes]:
    """The record's field, value pairs (unset fields left out)."""
    out: list[str | bytes] = [
        "id", record.id,
        "task", record.task,
        "payload", record.payload,
        "queue", record.queue,
        "state", record.state.value,
    ]  # fmt: skip
    for name in _FLOATS:
        out += [name, repr(float(getattr(record, name)))]
    for name in _OPTIONAL_FLOATS:
        value = getattr(record, name)
        if value is not None:
            out += [name, repr(float(value))]
    for name in _INTS:
        value = int(getattr(record, name))
        if value:
            out += [name, str(value)]
    for name in _OPTIONAL_STRS:
        value = getattr(record, name)
        if value is not None:
            out += [name, value]
    if record.result is not None:
        out += ["result", record.result]
    if record.error is not None:
        out += ["error", encode_error(record.error)]
    if record.progress is not None:
        out += ["progress", json.dumps(record.progress.to_json())]
    if record.cancel_requested:
        out += ["cancel_requested", "1"]
    if record.meta:
        out += ["meta", json.dumps(record.meta)]
    return out


_HEAD = struct.Struct(">BI")
_ARRAY32, _MAP32, _STR32 = 0xDD, 0xDF, 0xDB


def pack_records(records: Sequence[JobRecord]) -> bytes:
    """Records as one msgpack array of maps, which the scripts open with ``cmsgpack``: one
    argument for a whole batch, where a flat argument list costs the client far more."""
    parts = [_HEAD.pack(_ARRAY32, len(records))]
    for record in records:
        fields = encode_record(record)
        parts.append(_HEAD.pack(_MAP32, len(fields) // 2))
        for item in fields:
            data = item.encode() if isinstance(item, str) else item
            parts += [_HEAD.pack(_STR32, len(data)), data]
    return b"".join(parts)


def encode_error(error: ErrorInfo) -> str:
    return json.dumps(error.to_json())


def decode_record(flat: Sequence[bytes]) -> JobRecord:
    """A record from HGETALL's flat field, value list."""
    raw = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

    def text(name: str) -> str | None:
        value = raw.get(name)
        return None if value is None else value.decode()

    def number(name: str) -> float | None:
        value = raw.get(name)
        return None if value is None else float(value)

    def loads(name: str) -> Any:
        value = raw.get(name)
        return None if value is None else json.loads(value)

    error, progress = loads("error"), loads("progress")
    return JobRecord(
        id=raw["id"].decode(),
        task=raw["task"].decode(),
        payload=raw.get("payload", b""),
        queue=raw["queue"].decode(),
        priority=int(raw.get("priority", 0)),
        state=State(raw["state"].decode()),
        key=text("key"),
        unique_key=text("unique_key"),
        attempts=int(raw.get("attempts", 0)),
        failures=int(raw.get("failures", 0)),
        crashes=int(raw.get("crashes", 0)),
        created_at=number("created_at") or 0.0,
        ready_at=number("ready_at") or 0.0,
        expires_at=number("expires_at"),
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        purge_at=number("purge_at"),
        result_ttl=float(raw.get("result_ttl", 86400.0)),
        result=raw.get("result"),
        error=None if error is None else ErrorInfo.from_json(error),
        progress=None if progress is None else Progress.from_json(progress),
        worker=text("worker"),
        token=int(raw.get("token", 0)),
        lease_expires_at=number("lease_expires_at"),
        cancel_requested=raw.get("cancel_requested") == b"1",
        meta=loads("meta") or {},
    )
