"""The memory backend's cluster-wide limits: which jobs hold a slot of a limit's ref and when
recent claims started, so a claim admits a job only while its limits have room. A mixin of
``MemoryBackend``; the claim asks ``_admit`` under the backend's one lock and takes the slots."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from conveyor.backends.base import Signal
from conveyor.job import JobRecord, State
from conveyor.limits import LimitInfo, LimitRef, LimitSpec, LimitUse, free_permits, limit_info


class Limits:
    _lock: threading.RLock
    _jobs: dict[str, JobRecord]
    _signal: Signal
    _limit_specs: dict[str, LimitSpec]
    _slots: dict[LimitRef, dict[str, int]]
    _starts: dict[LimitRef, deque[float]]

    def _use(self, ref: LimitRef, spec: LimitSpec, now: float) -> tuple[int, int]:
        """Live slots and starts in the window of one ref, forgetting what no longer counts:
        a slot whose job is no longer running under its token or whose lease ran out, a start
        older than the window."""
        slots = self._slots.get(ref, {})
        for job_id, token in list(slots.items()):
            record = self._jobs.get(job_id)
            if (
                record is None
                or record.state is not State.RUNNING
                or record.token != token
                or record.lease_expires_at is None
                or record.lease_expires_at < now
            ):
                del slots[job_id]
        starts = self._starts.get(ref, deque())
        if spec.rate is not None:
            while starts and starts[0] <= now - spec.rate.per_seconds:
                starts.popleft()
        if not slots:
            self._slots.pop(ref, None)
        if not starts:
            self._starts.pop(ref, None)
        return len(slots), len(starts) if spec.rate is not None else 0

    def _admit(self, refs: Sequence[LimitRef], now: float) -> bool:
        for ref in refs:
            spec = self._limit_specs.get(ref[0])
            if spec is not None and free_permits(spec, *self._use(ref, spec, now)) <= 0:
                return False
        return True

    def set_limit(self, spec: LimitSpec, *, now: float) -> None:
        with self._lock:
            self._limit_specs[spec.name] = spec
        self._signal.notify()

    def limits(self, *, now: float) -> list[LimitInfo]:
        with self._lock:
            out = []
            for name, spec in sorted(self._limit_specs.items()):
                refs = {ref for ref in (*self._slots, *self._starts) if ref[0] == name}
                uses = [LimitUse(ref[1], *self._use(ref, spec, now)) for ref in refs]
                out.append(limit_info(spec, uses))
            return out
