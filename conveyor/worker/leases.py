"""The heartbeat: one thread renewing every lease of the worker in one backend call, and
running the cluster's housekeeping (recovering expired leases, sweeping) between beats.

It runs on a thread of its own so that a task holding the GIL in long stretches or blocking
its event loop cannot starve it: the lease is what proves the worker alive.

The worker's view of a lease starts when it *sent* the claim or the renewal (``time.monotonic``
before the call), and the store stamps the lease from its own clock when the call commits,
which is later: so the worker's deadline always comes first, however long a call waited. A
thread of its own (the watch) stops every run whose lease was not renewed within the local
deadline; such a run is handed back to the queue (``release``) once the store answers again,
so it does not count as a crash. Everything is kept per claim ``(job id, token)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from conveyor.backends.base import Backend, WorkerInfo

log = logging.getLogger("conveyor.worker")

Key = tuple[str, int]
#: how often the watch looks at the local deadlines: a worker resumed after a freeze (SIGSTOP,
#: a suspended VM) stops its expired runs within this
WATCH_SECONDS = 0.05


class LeaseKeeper:
    """Beats every ``interval`` seconds; tells the worker which claims are lost, which jobs to
    cancel, and which claims it must stop because it could not renew them in time."""

    def __init__(
        self,
        backend: Backend,
        worker: Callable[[], WorkerInfo],
        leases: Callable[[], list[tuple[str, int, float]]],
        *,
        lease_seconds: float,
        max_crashes: int,
        on_lost: Callable[[Key], None],
        on_cancel: Callable[[Key], None],
        on_expired: Callable[[Key], None] | None = None,
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
        self._on_expired = on_expired or on_lost
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
        self._renewed: dict[Key, float] = {}  # claim -> when its last good renewal was sent
        self._given_up: set[Key] = set()
        # stopped at the local deadline, and whether they had started: released when we can
        self._hand_back: list[tuple[Key, bool]] = []

    def start(self) -> None:
        self._thread.start()
        self._watch.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._watch.join(10)
        if self._hand_back:
            self.hand_back_now()

    def hand_back(self, key: Key, *, started: bool = True) -> None:
        """A run this worker stopped at its local deadline has ended: give the job back to
        the queue (``release``, fenced by the token) at the next beat that reaches the
        store, so the stop does not count as a crash."""
        with self._lock:
            self._hand_back.append((key, started))

    def hand_back_now(self) -> bool:
        """Release the claims waiting to be handed back; False if the store did not answer
        (they wait for the next beat)."""
        with self._lock:
            pending, self._hand_back = self._hand_back, []
        for i, ((job_id, token), started) in enumerate(pending):
            try:
                released = self._backend.release(job_id, token, started=started, now=self._clock())
            except Exception as exc:
                log.warning("could not hand back job %s yet: %s", job_id, exc)
                with self._lock:
                    self._hand_back[:0] = pending[i:]
                return False
            if released:
                log.warning("job %s: handed back to the queue after its lease ran out", job_id)
        return True

    def beat(self) -> None:
        if self._hand_back and not self.hand_back_now():
            return
        held = self._leases()
        sent = time.monotonic()  # the store extends each lease from a moment after this one
        try:
            result = self._backend.heartbeat(
                self._worker(),
                [(job_id, token) for job_id, token, _ in held],
                lease_seconds=self._lease_seconds,
                now=self._clock(),
            )
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        with self._lock:
            for job_id, token, _ in held:
                key = (job_id, token)
                if key not in result.lost:
                    self._renewed[key] = sent
        for key in result.lost:
            self._on_lost(key)
        for key in result.cancel_requested:
            self._on_cancel(key)

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
        """Stop every claim whose lease was not renewed within the local deadline, counted
        from when the claim or its last good renewal was sent."""
        now = time.monotonic()
        held = self._leases()
        late = []
        with self._lock:
            renewed = {}
            for job_id, token, claimed in held:
                key = (job_id, token)
                since = renewed[key] = self._renewed.get(key, claimed)
                if now - since > self.local_deadline and key not in self._given_up:
                    late.append(key)
            self._renewed = renewed
            self._given_up = (self._given_up & renewed.keys()) | set(late)
        for key in late:
            log.error("job %s: lease not renewed in time; stopping it", key[0])
            self._on_expired(key)

    def _watch_loop(self) -> None:
        while not self._stop.wait(min(WATCH_SECONDS, self.interval)):
            self.check_deadlines()

    def _loop(self) -> None:
        next_maintenance = 0.0
        while not self._stop.is_set():
            self.beat()
            if time.monotonic() >= next_maintenance:
                self.maintain()
                next_maintenance = time.monotonic() + self._maintenance_seconds
            self._stop.wait(self.interval)
