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
        # The deadline is watched by a thread of its own, which never waits on the backend: a
        # heartbeat call that hangs (a locked file, a server that does not answer) must not
        # delay the moment the worker stops its jobs.
        self._watch = threading.Thread(target=self._watch_loop, name="conveyor-leases", daemon=True)
        self._lock = threading.Lock()
        self._renewed: dict[str, float] = {}  # job id -> when its lease was last renewed
        self._given_up: set[str] = set()

    def start(self) -> None:
        self._thread.start()
        self._watch.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._watch.join(10)

    def beat(self) -> None:
        leases = self._leases()
        sent = time.monotonic()  # the store extends each lease from about this moment
        try:
            result = self._backend.heartbeat(
                self._worker(), leases, lease_seconds=self._lease_seconds, now=self._clock()
            )
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        with self._lock:
            self._renewed = {job_id: sent for job_id, _ in leases}
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

    def check_deadlines(self) -> None:
        """Stop every job whose lease was not renewed within the local deadline."""
        now = time.monotonic()
        current = {job_id for job_id, _ in self._leases()}
        late = []
        with self._lock:
            for job_id in current:
                # A job not seen before was claimed moments ago: its lease starts about now.
                since = self._renewed.setdefault(job_id, now)
                if now - since > self.local_deadline and job_id not in self._given_up:
                    late.append(job_id)
            self._given_up = (self._given_up & current) | set(late)
        for job_id in late:
            log.error("job %s: lease not renewed in time; stopping it", job_id)
            self._on_lost(job_id)

    def _watch_loop(self) -> None:
        while not self._stop.wait(min(0.25, self.interval)):
            self.check_deadlines()

    def _loop(self) -> None:
        next_maintenance = 0.0
        while not self._stop.is_set():
            self.beat()
            if time.monotonic() >= next_maintenance:
                self.maintain()
                next_maintenance = time.monotonic() + self._maintenance_seconds
            self._stop.wait(self.interval)
