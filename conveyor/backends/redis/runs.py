"""A worker's runs on Redis: the claims that claim.lua returns, decoded into records, and
the outcomes that finish.lua reads, packed (codec.py has the records themselves).

Both are on the worker's hot path, once per job: positions, not names, and each distinct
task, queue and time decoded once per batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from conveyor.backends.redis.codec import (
    _FIXSTR,
    _HEAD8,
    _HEAD16,
    _HEAD32,
    DEFAULT_RESULT_TTL,
    _error,
    _opt_float,
    _progress,
    _str,
    encode_error,
)
from conveyor.job import Claim, JobRecord, Outcome, State

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
