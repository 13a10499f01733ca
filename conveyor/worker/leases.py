"""The heartbeat: one thread renewing every lease of the worker in one backend call, and
running the cluster's housekeeping (recovering expired leases, sweeping) between beats.

It runs on a thread of its own so that a task holding the GIL in long stretches or blocking
its event loop cannot starve it: the lease is what proves the worker alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from conveyor.backends.base import Backend, WorkerInfo

log = logging.getLogger("conveyor.worker")


class LeaseKeeper:
    """Beats every ``interval`` seconds; tells the worker which leases are lost, which jobs to
    cancel, and when it could not renew before the local deadline."""

    def __init__(
        self,
        backend: Backend,
        worker: Callable[[], WorkerInfo],
        leases: Callable[[], list[tuple[str, int]]],
        *,
        lease_seconds: float,
        max_crashes: int,
        on_lost: Callable[[str], None],
        on_cancel: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        maintenance_seconds: float = 1.0,
    ) -> None:
        self._backend = backend
        self._worker = worker
        self._leases = leases
        self._lease_seconds = lease_seconds
        self._max_crashes = max_crashes
        self._on_lost = on_lost
        self._on_cancel = on_cancel
        self._clock = clock
        self.interval = min(1.0, lease_seconds / 3)
        # Stop a job well before its lease can run out in the store: then no other worker can
        # have taken it while it still runs here (a job never runs twice at the same time).
        self.local_deadline = lease_seconds * 0.75
        self._maintenance_seconds = maintenance_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conveyor-heartbeat", daemon=True)
        self._renewed: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def beat(self) -> None:
        leases = self._leases()
        now_mono = time.monotonic()
        try:
            result = self._backend.heartbeat(
                self._worker(), leases, lease_seconds=self._lease_seconds, now=self._clock()
            )
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)
            for job_id, _ in leases:
                since = self._renewed.setdefault(job_id, now_mono)
                if now_mono - since > self.local_deadline:
                    log.error("job %s: lease not renewed in time; stopping it", job_id)
                    self._on_lost(job_id)
            return
        self._renewed = {job_id: now_mono for job_id, _ in leases}
        for job_id in result.lost:
            self._on_lost(job_id)
        for job_id in result.cancel_requested:
            self._on_cancel(job_id)

    def maintain(self) -> None:
        now = self._clock()
        try:
            recovered = self._backend.recover(now=now, max_crashes=self._max_crashes)
            for job in recovered:
                log.warning("job %s lost its worker; now %s", job.id, job.state)
            self._backend.sweep(now=now)
        except Exception as exc:
            log.warning("housekeeping failed: %s", exc)

    def _loop(self) -> None:
        next_maintenance = 0.0
        while not self._stop.is_set():
            self.beat()
            if time.monotonic() >= next_maintenance:
                self.maintain()
                next_maintenance = time.monotonic() + self._maintenance_seconds
            self._stop.wait(self.interval)
