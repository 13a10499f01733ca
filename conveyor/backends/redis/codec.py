"""Job records to and from Redis hash fields.

Only fields that are set are stored; a missing field reads back as its default, and so does
an empty one where the scripts write '' for none (``worker``, ``lease_expires_at``,
``error``, ``cancel_requested``: clearing them with the HSET a finish makes anyway saves an
HDEL per job). Floats are written so they read back as the same double (``time_text``), and
the scripts never print a number with fewer than 17 digits, so times survive a trip through
Lua exactly.

Records travel to the scripts as msgpack arrays in the order of ``FIELDS`` (``common.lua``
has the same list), and claimed jobs come back as flat lists in the order ``claim.lua``
writes them (runs.py decodes those, and packs the outcomes a finish sends): positions, not
names, on both hot paths.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.job import ErrorInfo, JobRecord, Progress, State

#: a stored record's fields, in the order a packed record carries them (see common.lua):
#: those a new job may set first, so that it sends only the first NEW_FIELDS
FIELDS = (
    "id", "task", "payload", "queue", "state", "created_at", "ready_at", "result_ttl",
    "priority", "expires_at", "key", "unique_key", "meta", "attempts", "failures", "crashes",
    "started_at", "finished_at", "purge_at", "result", "error", "progress", "worker", "token",
    "lease_expires_at", "cancel_requested",
)  # fmt: skip
NEW_FIELDS = 13
#: a result_ttl that is not stored (as 0 is not stored for the counts): the scripts' default
DEFAULT_RESULT_TTL = 86400.0

_NIL = b"\xc0"
_FIXSTR = [bytes([0xA0 | n]) for n in range(32)]
# msgpack's headers of a type byte and an 8, 16 or 32-bit big-endian length (str, array) or
# value (uint)
_HEAD8 = struct.Struct(">BB").pack
_HEAD16 = struct.Struct(">BH").pack
_HEAD32 = struct.Struct(">BI").pack
# array 16 headers, then the count of fields that follow (a positive fixint)
_NEW = b"\xdc" + struct.pack(">HB", NEW_FIELDS + 1, NEW_FIELDS)
_FULL = b"\xdc" + struct.pack(">HB", len(FIELDS) + 1, len(FIELDS))
_STATES = {state: state.value.encode() for state in State}


def _str(data: bytes) -> bytes:
    n = len(data)
    if n < 32:
        return _FIXSTR[n] + data
    if n < 0x100:
        return _HEAD8(0xD9, n) + data
    if n < 0x10000:
        return _HEAD16(0xDA, n) + data
    return _HEAD32(0xDB, n) + data


_names: dict[str, bytes] = {}


def _name(text: str) -> bytes:
    """Task and queue names repeat: packed once each (a bounded cache)."""
    packed = _names.get(text)
    if packed is None:
        packed = _str(text.encode())
        if len(_names) < 1024:
            _names[text] = packed
    return packed


def _text(value: str | None) -> bytes:
    return _NIL if value is None else _str(value.encode())


def _float(value: float | None) -> bytes:
    return _NIL if value is None else _str(time_text(value).encode())


def _int(value: int) -> bytes:
    return _str(str(int(value)).encode()) if value else _NIL


def _json(value: Any) -> bytes:
    return _str(json.dumps(value).encode())


def pack_records(records: Sequence[JobRecord]) -> bytes:
    """Records as one msgpack array of arrays (``FIELDS`` order, nil for unset), which the
    scripts open with ``cmsgpack``: one argument for a whole batch, where a flat argument
    list costs the client far more."""
    parts = [_HEAD32(0xDD, len(records))]
    add = parts.append
    for r in records:
        new = _is_new(r)
        add(
            b"".join((
                _NEW if new else _FULL,
                _str(r.id.encode()), _name(r.task), _str(r.payload), _name(r.queue),
                _str(_STATES[r.state]), _float(r.created_at), _float(r.ready_at),
                _NIL if r.result_ttl == DEFAULT_RESULT_TTL else _float(r.result_ttl),
                _int(r.priority), _float(r.expires_at), _text(r.key),
                _text(r.unique_key), _json(r.meta) if r.meta else _NIL,
            ))
        )  # fmt: skip
        if not new:
            add(
                b"".join((
                    _int(r.attempts), _int(r.failures), _int(r.crashes),
                    _float(r.started_at), _float(r.finished_at), _float(r.purge_at),
                    _NIL if r.result is None else _str(r.result),
                    _NIL if r.error is None else _str(encode_error(r.error).encode()),
                    _NIL if r.progress is None else _json(r.progress.to_json()),
                    _text(r.worker), _int(r.token), _float(r.lease_expires_at),
                    _str(b"1") if r.cancel_requested else _NIL,
                ))
            )  # fmt: skip
    return b"".join(parts)


_EXACT = 2**53  # integers below it are doubles exactly
_events: dict[str, str] = {}


def time_text(t: float) -> str:
    """A time as text that reads back as the same double. A time in whole microseconds (as
    the app stamps them, ``make_record``) is written as its exact decimal, made from the
    integer: a float's repr runs dtoa, five times the cost (``python -m bench.delay_cost``).
    Any other time is written with repr."""
    us = int(t * 1e6 + 0.5)
    # us / 1e6 is the double nearest us / 10**6, as reading the decimal gives
    if 1_000_000 <= us < _EXACT and us / 1e6 == t:
        digits = str(us)
        return digits[:-6] + "." + (digits[-6:].rstrip("0") or "0")
    return repr(float(t))


def one_args(r: JobRecord) -> list[Any] | None:
    """The arguments of enqueue.lua's one-job form, or None when the job needs the general
    one (it holds a key or unique key, an expiry, is not queued or ran before, or is ready at
    a time written with an exponent). Six arguments, then the rare fields as field, value
    pairs: every argument costs over a thousand instructions in the client's packing and as
    many in the server's unpacking. The ready score is not sent: the script reads it from
    ready_at's text (and the priority). The change-feed entry is written as cjson would."""
    if (
        r.state is not State.QUEUED or r.key is not None or r.unique_key is not None
        or r.expires_at is not None or not _is_new(r)
    ):  # fmt: skip
        return None
    ready_at = time_text(r.ready_at)
    if "e" in ready_at or not ready_at[-1].isdigit():  # no plain decimal (common.lua ready_score)
        return None
    args: list[Any] = [r.id, r.task, r.queue, r.payload, ready_at, _event(r.id, r.task)]
    if r.created_at != r.ready_at:  # a job not delayed was created when it became ready
        args += ("created_at", time_text(r.created_at))
    if r.result_ttl != DEFAULT_RESULT_TTL:
        args += ("result_ttl", time_text(r.result_ttl))
    if r.priority:
        args += ("priority", str(int(r.priority)))
    if r.meta:
        args += ("meta", json.dumps(r.meta))
    return args


def _event(job_id: str, task: str) -> str:
    """The JSON of a new job's event: id, task, 'queued', no progress."""
    if job_id.isalnum() and job_id.isascii():  # as the ids conveyor makes: nothing to escape
        head = _events.get(task)
        if head is None:
            head = "," + json.dumps([task, "queued", ""])[1:]
            if len(_events) < 1024:
                _events[task] = head
        return '["' + job_id + '"' + head
    return json.dumps([job_id, task, "queued", ""])


def _is_new(r: JobRecord) -> bool:
    """Nothing set past the first NEW_FIELDS: the record of a job never run."""
    return not (
        r.attempts or r.failures or r.crashes or r.token or r.cancel_requested
        or r.started_at is not None or r.finished_at is not None or r.purge_at is not None
        or r.result is not None or r.error is not None or r.progress is not None
        or r.worker is not None or r.lease_expires_at is not None
    )  # fmt: skip


def encode_error(error: ErrorInfo) -> str:
    return json.dumps(error.to_json())


def _opt_text(value: bytes | None) -> str | None:
    return value.decode() if value else None


def _opt_float(value: bytes | None) -> float | None:
    return float(value) if value else None


def _error(value: bytes | None) -> ErrorInfo | None:
    return ErrorInfo.from_json(json.loads(value)) if value else None


def _progress(value: bytes | None) -> Progress | None:
    return Progress.from_json(json.loads(value)) if value else None


def decode_record(flat: Sequence[bytes]) -> JobRecord:
    """A record from HGETALL's flat field, value list (as a script returns it)."""
    return decode_fields(dict(zip(flat[::2], flat[1::2], strict=True)))


def decode_fields(raw: Mapping[bytes, bytes]) -> JobRecord:
    """A record from its hash, field -> value (as HGETALL gives it to the client)."""
    get = raw.get
    key, unique_key, meta = get(b"key"), get(b"unique_key"), get(b"meta")
    return JobRecord(
        id=raw[b"id"].decode(),
        task=raw[b"task"].decode(),
        payload=get(b"payload", b""),
        queue=raw[b"queue"].decode(),
        priority=int(get(b"priority", 0)),
        state=State(raw[b"state"].decode()),
        key=None if key is None else key.decode(),
        unique_key=None if unique_key is None else unique_key.decode(),
        attempts=int(get(b"attempts", 0)),
        failures=int(get(b"failures", 0)),
        crashes=int(get(b"crashes", 0)),
        created_at=float(get(b"created_at", 0.0)),
        ready_at=float(get(b"ready_at", 0.0)),
        expires_at=_opt_float(get(b"expires_at")),
        started_at=_opt_float(get(b"started_at")),
        finished_at=_opt_float(get(b"finished_at")),
        purge_at=_opt_float(get(b"purge_at")),
        result_ttl=float(get(b"result_ttl", DEFAULT_RESULT_TTL)),
        result=get(b"result"),
        error=_error(get(b"error")),
        progress=_progress(get(b"progress")),
        worker=_opt_text(get(b"worker")),
        token=int(get(b"token", 0)),
        lease_expires_at=_opt_float(get(b"lease_expires_at")),
        cancel_requested=get(b"cancel_requested") == b"1",
        meta=json.loads(meta) if meta else {},
    )
