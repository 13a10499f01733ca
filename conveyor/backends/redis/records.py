"""The Redis backend's records beside the jobs: cluster-wide limits, the workers' registry
and the periodic jobs' due times. A mixin of ``RedisBackend``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from conveyor.backends.base import DueResult, ScheduleState, WorkerInfo
from conveyor.backends.redis.codec import pack_records
from conveyor.backends.redis.connection import Client
from conveyor.job import JobRecord
from conveyor.limits import LimitInfo, LimitSpec, LimitUse, limit_info


class Records:
    _prefix: str
    _run: Callable[..., Any]
    _call: Callable[..., Any]

    # -- cluster-wide limits ----------------------------------------------------------------

    def set_limit(self, spec: LimitSpec, *, now: float) -> None:
        # None is left out: the scripts read a missing field as no limit (cjson's null is not nil)
        raw = {k: v for k, v in spec.to_json().items() if v is not None}
        self._run("set_limit", spec.name, json.dumps(raw))

    def limits(self, *, now: float) -> list[LimitInfo]:
        out = []
        for name, raw, flat in self._run("list_limits", repr(now)):
            spec = LimitSpec.from_json(name.decode(), json.loads(raw))
            uses = [
                LimitUse(flat[i].decode(), int(flat[i + 1]), int(flat[i + 2]))
                for i in range(0, len(flat), 3)
            ]
            out.append(limit_info(spec, uses))
        return sorted(out, key=lambda info: info.name)

    # -- workers ---------------------------------------------------------------------------

    def register_worker(self, worker: WorkerInfo) -> None:
        def write(client: Client) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hset(f"{self._prefix}workers", worker.id, worker_json(worker))
            pipe.zadd(f"{self._prefix}workers_seen", {worker.id: worker.last_seen})
            pipe.execute()

        self._call(write)

    def unregister_worker(self, worker_id: str) -> None:
        def delete(client: Client) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hdel(f"{self._prefix}workers", worker_id)
            pipe.zrem(f"{self._prefix}workers_seen", worker_id)
            pipe.execute()

        self._call(delete)

    def list_workers(self) -> list[WorkerInfo]:
        raw: Any = self._call(lambda c: c.hvals(f"{self._prefix}workers"))
        return [WorkerInfo(**json.loads(value)) for value in raw]

    # -- periodic jobs ---------------------------------------------------------------------

    def record_due(
        self, name: str, due: float, record: JobRecord, *, skip_if_active: bool, now: float
    ) -> DueResult:
        skip = "1" if skip_if_active else "0"
        reply = self._run(
            "record_due", name, repr(float(due)), skip, repr(now), pack_records([record])
        )
        return DueResult(reply.decode())

    def schedules(self) -> list[ScheduleState]:
        def num(value: bytes | None) -> float | None:
            return None if not value else float(value)

        return [
            ScheduleState(name.decode(), num(due), job.decode() if job else None, num(at))
            for name, due, job, at in self._run("schedules")
        ]


def worker_json(worker: WorkerInfo) -> str:
    return json.dumps(asdict(worker))
