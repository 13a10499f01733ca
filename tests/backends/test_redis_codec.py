"""The Redis codec's decoding of claimed jobs, which builds each record field by field."""

from __future__ import annotations

import dataclasses

from conveyor.backends.redis.runs import decode_claims
from conveyor.job import Claim, ErrorInfo, JobRecord, State


def test_decoded_claims_hold_every_field_of_their_records_as_the_constructor_sets_them() -> None:
    error = b'{"type": "E", "message": "m", "traceback": null}'
    rare = [3, b"k", b"u", 1, 2, b"1700000100.5", b"60.0", error, None, b'{"a": 1}']
    flat = [
        b"plain", b"q", 7, b"tasks.add", b"[[1],{}]", 1, b"1700000000.25", b"1700000000.25", None,
        b"rare", b"q", 8, b"tasks.add", b"", 2, b"1700000000.25", b"1700000001.5", rare,
    ]  # fmt: skip
    claims = decode_claims(flat, "w1", 1700000002.0, 1700000032.0)

    common = {
        "queue": "q", "state": State.RUNNING, "worker": "w1", "started_at": 1700000002.0,
        "lease_expires_at": 1700000032.0, "created_at": 1700000000.25,
    }  # fmt: skip
    plain = JobRecord(
        "plain", "tasks.add", b"[[1],{}]", attempts=1, token=7, ready_at=1700000000.25, **common
    )
    full = JobRecord(
        "rare", "tasks.add", b"", attempts=2, token=8, ready_at=1700000001.5, priority=3,
        key="k", unique_key="u", failures=1, crashes=2, expires_at=1700000100.5,
        result_ttl=60.0, error=ErrorInfo("E", "m"), meta={"a": 1}, **common,
    )  # fmt: skip
    assert claims == [Claim(plain, 7), Claim(full, 8)]
    for claim in claims:  # a field left unset would raise here, not compare unequal
        assert {f.name for f in dataclasses.fields(claim)} == {"record", "token"}
        for f in dataclasses.fields(JobRecord):
            getattr(claim.record, f.name)
    # each job has a meta dict of its own, as the constructor's default_factory makes
    assert claims[0].record.meta is not decode_claims(flat, "w1", 0.0, 1.0)[0].record.meta
