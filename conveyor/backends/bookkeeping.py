"""The bookkeeping the backends share, written once: a finish's effect on a record, the
store-wide heartbeat record that tells a stall from a lost worker, the poison job's error, and
the in-process wake-up. For backends that compute these in Python (Redis's Lua mirrors the
stall rule); ``base.py`` re-exports them."""

from __future__ import annotations

import threading
from typing import Any

from conveyor.job import JobRecord, Outcome


class Signal:
    """An in-process notification: ``notify()`` wakes every ``wait()`` in this process.

    A generation counter makes it race-free: a waiter that read the generation before
    checking the store wakes even if the notification came before it started waiting.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, timeout: float, since: int | None = None) -> bool:
        """Wait until notified after generation ``since`` (default: now); True if notified."""
        with self._cond:
            start = self._generation if since is None else since
            return self._cond.wait_for(lambda: self._generation != start, timeout)


def apply_outcome(record: JobRecord, outcome: Outcome, *, now: float) -> None:
    """The effect of ``finish`` on a record, for backends that compute it in Python. A final
    outcome keeps ``worker``: which worker ran the job stays on show (``conveyor job``)."""
    record.lease_expires_at = None
    if outcome.state.is_final:
        record.state = outcome.state
        record.result = outcome.result
        record.error = outcome.error
        record.finished_at = now
        record.purge_at = now + record.result_ttl
        record.cancel_requested = False
    else:
        record.worker = None
        record.state = outcome.state
        record.ready_at = now if outcome.ready_at is None else outcome.ready_at
        record.error = outcome.error
        if outcome.counts_failure:
            record.failures += 1


#: heartbeats (store time) further apart than this share of the lease mean a stall
STALL_SHARE = 0.5
#: after a stall, ``recover`` counts no crashes for this many lease lengths
STALL_GRACE_LEASES = 2.0


def note_heartbeat(
    quiet_after: float | None, stall_until: float | None, t: float, lease_seconds: float
) -> tuple[float, float | None]:
    """The store-wide heartbeat record after a heartbeat at store time ``t``: the new
    ``(quiet_after, stall_until)``, for backends that compute it in Python (Lua mirrors it)."""
    if quiet_after is not None and t > quiet_after:
        stall_until = max(stall_until or t, t + STALL_GRACE_LEASES * lease_seconds)
    return t + STALL_SHARE * lease_seconds, stall_until


def in_stall(quiet_after: float | None, stall_until: float | None, t: float) -> bool:
    """True when leases that ran out by store time ``t`` may have run out because nobody
    could reach the store: no heartbeat for too long, or just after such a gap."""
    return (quiet_after is not None and t > quiet_after) or (
        stall_until is not None and t < stall_until
    )


def worker_lost_error(crashes: int) -> dict[str, Any]:
    return {
        "type": "WorkerLost",
        "message": (
            f"the job lost its worker {crashes} times (killed, lost host or network, or a "
            "lease that ran out); failed as a suspected poison job"
        ),
        "traceback": None,
    }
