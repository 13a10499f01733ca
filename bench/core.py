"""What a system plugs into the benchmark: a ``Target`` (one system on one store) on the
measuring side, and ``prepare_worker`` on the worker-process side.

A system module in ``bench/systems/`` exposes two functions:

- ``targets() -> list[Target]``: the configurations to measure (conveyor: SQLite FULL and
  NORMAL; a peer: its best documented configuration for throughput).
- ``prepare_worker(spec, concurrency) -> Callable[[], None]``: called in a fresh worker
  process with the target's ``worker_spec()``; does every import and connection up front and
  returns the function that runs the worker until SIGTERM. The runner starts the clock only
  when every worker has prepared, so interpreter start-up is not counted as job time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

PrepareWorker = Callable[[dict[str, Any], int], Callable[[], None]]


class Unsupported(Exception):
    """The target has no such operation (for example no bulk enqueue)."""


class Target(ABC):
    system: str = ""
    store: str = ""
    #: worker concurrencies the throughput runs try; the best is reported with its setting
    concurrencies: tuple[int, ...] = (8, 32)
    #: concurrency of the idle worker in the pickup measurements
    pickup_concurrency: int = 8
    #: False for a yardstick that only stores jobs: the measurements that run jobs skip it
    runs_jobs: bool = True
    #: False for a variant whose enqueuing side is the same code as another target's
    measures_enqueue: bool = True
    #: jobs per throughput run, when the run's default would take too long (RQ's forking)
    throughput_jobs: int | None = None
    #: True for a target on the bench's own redis-server; the runner sets ``redis_url``
    needs_redis: bool = False
    redis_url: str = ""
    #: True for a target on the bench's own PostgreSQL (bench.like only); the runner sets
    #: ``postgres_url``, the server's admin URL
    needs_postgres: bool = False
    postgres_url: str = ""
    #: how the target is configured, for RESULTS.md
    config: str = ""

    @property
    def name(self) -> str:
        return f"{self.system}/{self.store}"

    @property
    @abstractmethod
    def version(self) -> str:
        """The system's version, printed beside its numbers."""

    @abstractmethod
    def fresh(self, workdir: Path) -> None:
        """Start over on an empty store inside ``workdir`` (a new file, a flushed database)."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the store opened by ``fresh``."""

    @abstractmethod
    def enqueue_one(self) -> None:
        """Enqueue one no-op job the way a user does one at a time (``delay()``)."""

    def enqueue_bulk(self, n: int, batch: int) -> None:
        """Enqueue ``n`` no-op jobs with the system's bulk call, ``batch`` at a time."""
        raise Unsupported(f"{self.name} has no bulk enqueue")

    @abstractmethod
    def pending(self) -> int:
        """How many jobs are not final yet (queued, scheduled or running)."""

    def taken(self, n: int) -> bool:
        """Whether a worker has taken one of the ``n`` jobs enqueued (asked every millisecond
        until it has)."""
        return self.pending() < n

    def finished(self) -> bool:
        """Whether every job enqueued is final (asked every 20 ms while the workers run)."""
        return self.pending() == 0

    def check_done(self, n: int) -> None:
        """Raise if the ``n`` jobs of a throughput run did not all succeed (a benchmark that
        counts failures as throughput would flatter); systems that can tell override it."""
        return None

    @abstractmethod
    def enqueue_stamp(self) -> object:
        """Enqueue a job whose result is ``time.time()`` taken when it started; a handle."""

    @abstractmethod
    def stamp_results(self, handles: list[object], timeout: float) -> list[float]:
        """The start times recorded by the stamp jobs, in order."""

    @abstractmethod
    def worker_spec(self) -> dict[str, Any]:
        """JSON for ``prepare_worker`` in the worker process: what store to serve."""

    def yardstick(self, workdir: Path, scale: float) -> dict[str, float]:
        """The physical limits this yardstick measures beyond the common measurements
        (``scale`` shrinks them for a quick run); a system returns nothing."""
        return {}

    def embedded_worker(self, concurrency: int) -> AbstractContextManager[object] | None:
        """A worker inside this process, started and stopped around a block, if the system
        has one."""
        return None


class SystemModule(Protocol):
    def targets(self) -> list[Target]: ...

    def prepare_worker(self, spec: dict[str, Any], concurrency: int) -> Callable[[], None]: ...
