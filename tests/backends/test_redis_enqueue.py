"""The Redis backend's one-job enqueue (enqueue.lua's flat form, which ``delay()`` takes):
it stores, indexes and announces a job exactly as the general form does."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.codec import one_args, time_text
from conveyor.job import State
from tests.backends.helpers import LEASE, NOW, make_record
from tests.servers import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def backend(redis_server: RedisServer) -> Iterator[RedisBackend]:
    opened = RedisBackend(redis_server.url, namespace=f"t{uuid.uuid4().hex[:12]}")
    yield opened
    opened.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


ODD = [
    {},
    {"priority": 7, "result_ttl": 10.0, "meta": {"chain": ["a", "b"], "n": 2}},
    {"priority": -3, "payload": b"\x00\xff\r\nbytes", "queue": "q \u00e9"},
    {"id": 'an "odd" id\\ \u00e9', "task": 'tests."quoted"\\task \u00e9'},
    {"at": NOW + 0.1, "priority": 2**10},
    {"ready_at": NOW - 5},  # due before it was made: queued, created_at sent apart
]


@pytest.mark.parametrize("fields", ODD)
def test_one_job_is_stored_scored_and_announced_as_the_general_form_does_it(
    backend: RedisBackend, raw: redis.Redis, fields: dict[str, Any]
) -> None:
    one = make_record(**fields)
    assert one_args(one) is not None  # the flat form: the job is new, queued, has no key
    twin = make_record(**{**fields, "id": None})
    before = backend.last_event_id()
    assert backend.enqueue([one]) == [one]
    # two records take the general form (msgpack, store() in common.lua)
    backend.enqueue([twin, make_record(task="tests.other", queue="other")])
    assert backend.get(one.id) == one
    p = backend._prefix
    hashes = [raw.hgetall(f"{p}job:{r.id}") for r in (one, twin)]
    for h, r in zip(hashes, (one, twin), strict=True):
        assert h.pop(b"id") == r.id.encode()
    assert hashes[0] == hashes[1]
    scores = [raw.zscore(f"{p}ready:{one.queue}", r.id) for r in (one, twin)]
    assert scores[0] is not None and scores[0] == scores[1]
    for index in (f"{p}bytask:{one.task}", f"{p}byqueue:{one.queue}"):
        assert raw.zscore(index, one.id) == 0
    assert not raw.exists(f"{p}all")  # layout 2 keeps no index of every job
    assert backend.queue_counts()[one.queue] == {State.QUEUED: 2}
    assert [r.id for r in backend.list_jobs(task=one.task)] == sorted(
        [one.id, twin.id], reverse=True
    )
    [event] = [e for e in backend.read_events(before) if e.job_id == one.id]
    assert (event.id, event.task, event.state, event.progress) == (
        before + 1,
        one.task,
        State.QUEUED,
        None,
    )
    assert abs(event.at.timestamp() - time.time()) < 60  # the server's time


def test_priority_and_ready_time_order_one_job_and_batched_jobs_alike(
    backend: RedisBackend,
) -> None:
    # the flat form's score is computed by the client: it must order as the scripts' does
    batched = [make_record(priority=1, at=NOW + 2), make_record(at=NOW - 1)]
    alone = [make_record(priority=1, at=NOW + 1), make_record(at=NOW - 2), make_record(at=NOW)]
    backend.enqueue(batched)
    for r in alone:
        backend.enqueue([r])
    claims = backend.claim("w1", ["default"], 10, lease_seconds=LEASE, now=NOW + 5)
    expected = [alone[0], batched[0], alone[1], batched[1], alone[2]]
    assert [c.record.id for c in claims] == [r.id for r in expected]


def test_a_retried_one_job_call_returns_the_stored_job_and_stores_nothing_twice(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    record = make_record()
    before = backend.last_event_id()
    backend.enqueue([record])
    # as a call whose reply was lost and is sent again: the job is not written twice
    # (sent with another payload here, to tell the stored job from the one sent)
    assert backend.enqueue([replace(record, payload=b"other")]) == [record]
    assert backend.queue_counts() == {"default": {State.QUEUED: 1}}
    assert raw.zcard(f"{backend._prefix}ready:default") == 1
    assert backend.last_event_id() == before + 1


def test_jobs_the_flat_form_cannot_take_go_the_general_way() -> None:
    for fields in (
        {"key": "k"},
        {"unique_key": "u"},
        {"expires_at": NOW + 60},
        {"ready_at": NOW + 60},  # scheduled
        {"attempts": 1},
    ):
        assert one_args(make_record(**fields)) is None, fields
    assert one_args(make_record()) is not None


def test_times_are_written_as_text_that_reads_back_as_the_same_double() -> None:
    rng = random.Random(15)
    times = [0.0, -1.5, 1e-05, 1.5e16, 86400.0, NOW, NOW + 0.1, time.time(), 2.0**53]
    times += [rng.randrange(10**6, 2 * 10**15) / 1e6 for _ in range(2000)]  # whole µs
    times += [rng.uniform(0, 2e9) for _ in range(2000)]
    for t in times:
        text = time_text(t)
        assert float(text) == t and ("e" in text or "n" in text or "." in text), (t, text)
    assert time_text(1_700_000_000.25) == "1700000000.25"  # whole µs: from the integer
