"""Job records to and from Redis hash fields.

Only fields that are set are stored; a missing field reads back as its default, and so does
an empty one where the scripts write '' for none (``worker``, ``lease_expires_at``,
``error``, ``cancel_requested``: clearing them with the HSET a finish makes anyway saves an
HDEL per job). Floats are written so they read back as the same double (``time_text``), and
the scripts never print a number with fewer than 17 digits, so times survive a trip through
Lua exactly.

Records travel to the scripts as msgpack arrays in the order of ``FIELDS`` (``common.lua``
has the same list), and claimed jobs come back as flat lists in the order ``claim.lua``
writes them: positions, not names, on both hot paths.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.job import Claim, ErrorInfo, JobRecord, Outcome, Progress, State

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


_EMPTY = _str(b"")
_FLAGS = {False: _str(b"0"), True: _str(b"1")}
_OUTCOME_STATES = {state: _str(state.value.encode()) for state in State}


#: what a finish may send of a run its backend claimed, by job id: the run's token and its
#: claim's queue, task and start time, packed as finish_jobs reads them (``decode_claims``)
Held = dict[str, tuple[int, bytes]]


def pack_outcomes(items: Sequence[tuple[str, int, Outcome]], held: Held | None = None) -> bytes:
    """Outcomes as finish_jobs (common.lua) reads them: one msgpack array holding the number
    m of distinct outcomes, m outcomes (state, has_result, result, error, ready_at and
    counts_failure, '' for none), the number r of distinct runs, r runs (queue, task,
    started_at: see ``Held``), then per job its id, token, the number of its outcome (1 to
    m) and that of its run (0 for none). One argument for a whole batch: the client packs a
    command's arguments one by one, at a cost per argument far above that of a few bytes
    more in one. Consecutive jobs with the same outcome (a task returning None) share it:
    the server then makes four values per job, not eight. A job's run comes from ``held``
    (taken out of it) when it holds the job under the same token: the run a claim of this
    backend gave, whose queue, task and start time the server then reads from here, not
    from the job's hash, where each costs it a scan and a value made in Lua. A job's token
    is what the server checks, so a run held under another token is not sent."""
    outcomes: list[bytes] = []
    runs: dict[bytes, bytes] = {}
    jobs: list[bytes] = []
    add = jobs.append
    last: Outcome | None = None
    number = b""
    take = held.pop if held else None
    for job_id, token, outcome in items:
        if outcome is not last:
            last = outcome
            outcomes.append(_outcome(outcome))
            number = _uint(len(outcomes))
        run = b"\x00"
        if take is not None:
            got = take(job_id, None)
            if got is not None and got[0] == token:
                run = runs.get(got[1]) or runs.setdefault(got[1], _uint(len(runs) + 1))
        packed = job_id.encode()
        digits = b"%d" % token  # under 32 digits: a fixstr
        if len(packed) < 32:
            add(b"".join((_FIXSTR[len(packed)], packed, _FIXSTR[len(digits)], digits, number, run)))
        else:
            add(b"".join((_str(packed), _FIXSTR[len(digits)], digits, number, run)))
    n = 2 + 6 * len(outcomes) + 3 * len(runs) + 4 * len(items)
    head = _HEAD32(0xDD, n) + _uint(len(outcomes))
    return b"".join((head, *outcomes, _uint(len(runs)), *runs, *jobs))


def _uint(n: int) -> bytes:
    """A msgpack unsigned integer."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return _HEAD8(0xCC, n)
    if n < 0x10000:
        return _HEAD16(0xCD, n)
    return _HEAD32(0xCE, n)


def _outcome(outcome: Outcome) -> bytes:
    result, error, ready_at = outcome.result, outcome.error, outcome.ready_at
    return b"".join((
        _OUTCOME_STATES[outcome.state],
        _FLAGS[result is not None],
        _EMPTY if result is None else _str(result),
        _EMPTY if error is None else _str(encode_error(error).encode()),
        _EMPTY if ready_at is None else _str(repr(float(ready_at)).encode()),
        _FLAGS[bool(outcome.counts_failure)],
    ))  # fmt: skip


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


#: values per claimed job in claim.lua's reply (common.lua claim_jobs): id, queue, token,
#: task, payload, attempts, created_at, ready_at, and its rare fields (nil when none is set)
CLAIM_STRIDE = 9


def decode_claims(
    flat: Sequence[Any],
    worker: str,
    started: float,
    lease: float,
    held: Held | None = None,
    started_text: bytes = b"",
) -> list[Claim]:
    """The claims from claim.lua's flat reply; what the claim itself set (state, worker, the
    store's start and lease times) is filled in here rather than sent back per job. A worker
    decodes one record per job it runs: the record is built with its fields in order
    (JobRecord's), without keywords, and the fields most jobs leave unset come back (and are
    decoded) only for a job that sets one of them. Each run is noted in ``held`` (when given)
    for its finish (``pack_outcomes``): its token, and its queue, task and start time (the
    claim's text, ``started_text``) packed once per queue and task."""
    claims: list[Claim] = []
    add = claims.append
    running = State.RUNNING
    runs: dict[tuple[bytes, bytes], bytes] = {}
    # Jobs enqueued together share their creation time, and most were ready at it: each
    # distinct time is parsed once (a float from 17 digits costs more than the lookup).
    times: dict[bytes | None, float] = {None: 0.0, b"": 0.0}
    # Tasks and queues repeat too: each distinct name is decoded once.
    names: dict[bytes, str] = {}
    it = iter(flat)
    for job_id, queue, token, task, payload, attempts, created_at, ready_at, rare in zip(
        *[it] * CLAIM_STRIDE, strict=True
    ):
        created = times.get(created_at)
        if created is None:
            created = times[created_at] = float(created_at)
        ready = times.get(ready_at)
        if ready is None:
            ready = times[ready_at] = float(ready_at)
        task_name = names.get(task)
        if task_name is None:
            task_name = names[task] = task.decode()
        queue_name = names.get(queue)
        if queue_name is None:
            queue_name = names[queue] = queue.decode()
        # The record's and the claim's fields are set here, each once, on objects made
        # without their __init__: a class's Python __init__, called through the type, costs
        # about 2,000 instructions of call overhead, for two objects a job. Every field is
        # set (tests/backends/test_redis_codec.py checks them all).
        record = _new(JobRecord)
        record.id = job = job_id.decode()
        record.task = task_name
        record.payload = payload or b""
        record.queue = queue_name
        record.priority = 0
        record.state = running
        record.key = record.unique_key = None
        record.attempts = attempts
        record.failures = record.crashes = 0
        record.created_at = created
        record.ready_at = ready
        record.expires_at = record.finished_at = record.purge_at = None
        record.started_at = started
        record.result_ttl = DEFAULT_RESULT_TTL
        record.result = record.error = record.progress = None
        record.worker = worker
        record.token = token
        record.lease_expires_at = lease
        record.cancel_requested = False
        record.meta = {}
        if rare is not None:
            _set_rare(record, *rare)
        claim = _new(Claim)
        claim.record = record
        claim.token = token
        add(claim)
        if held is not None:
            run = runs.get((queue, task))
            if run is None:
                run = runs[queue, task] = b"".join((_str(queue), _str(task), _str(started_text)))
            held[job] = (token, run)
    return claims


_new = object.__new__


def _set_rare(
    record: JobRecord,
    priority: int,
    key: bytes | None,
    unique_key: bytes | None,
    failures: int,
    crashes: int,
    expires_at: bytes | None,
    result_ttl: bytes | None,
    error: bytes | None,
    progress: bytes | None,
    meta: bytes | None,
) -> None:
    record.priority, record.failures, record.crashes = priority, failures, crashes
    record.key = None if key is None else key.decode()
    record.unique_key = None if unique_key is None else unique_key.decode()
    record.expires_at = _opt_float(expires_at)
    if result_ttl:
        record.result_ttl = float(result_ttl)
    record.error = _error(error)
    record.progress = _progress(progress)
    if meta:
        record.meta = json.loads(meta)
