"""What the worker needs from a pool, and the watchdog that fires time limits."""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from conveyor.worker.execute import JobRun

#: called by a pool when a run is over: the outcome to finish with, or None
Complete = Callable[[JobRun, "object | None"], None]


class Pool(Protocol):
    """Runs prepared jobs in ``size`` slots, at most ``size`` at once. The worker submits
    the jobs it claims ahead with the others: a pool keeps them waiting until a slot frees."""

    size: int
    name: str

    def start(self) -> None: ...

    def submit(self, run: JobRun) -> None: ...

    def interrupt(self, run: JobRun, reason: str) -> bool:
        """Stop a run for ``reason`` (cancel, timeout, soft, lease, shutdown); True if it was
        still running and has been told to stop."""
        ...

    def unstarted(self) -> list[JobRun]:
        """Take back the runs not yet started (for a shutdown)."""
        ...

    def stop(self, timeout: float) -> None: ...


def take_unstarted(runs: queue.SimpleQueue[JobRun | None]) -> list[JobRun]:
    """Take every run still waiting in a pool's queue (a shutdown, or jobs claimed ahead going
    back); a None (a thread's stop sign) stays in the queue for its thread."""
    taken: list[JobRun] = []
    while True:
        try:
            run = runs.get_nowait()
        except queue.Empty:
            return taken
        if run is None:
            runs.put(None)
            return taken
        with run.lock:
            if run.started:  # pragma: no cover - a slot took it meanwhile
                continue
            run.done = True
        taken.append(run)


class Watchdog:
    """One thread that calls callbacks at given times: the pools' time limits.

    A heap and a condition, rather than a ``threading.Timer`` (a thread) per job."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._counter = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="conveyor-watchdog", daemon=True)
        self._thread.start()

    def at(self, delay: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (self._clock() + delay, next(self._counter), callback))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    wait = None if not self._heap else self._heap[0][0] - self._clock()
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, callback = heapq.heappop(self._heap)
            callback()
