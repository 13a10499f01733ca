"""What a worker is told when it is built: ``WorkerSettings``, checked once at construction,
and the pool they choose. Apart from ``worker.py`` so that the worker's threads read on their own;
``worker.py`` re-exports both names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.worker.execute import JobExecutor
from conveyor.worker.pools.base import Pool

POOLS = ("thread", "process", "async")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    queues: tuple[str, ...] | None = None
    concurrency: int = 8
    pool: str = "thread"
    max_tasks_per_child: int | None = None
    max_memory_per_child: float | None = None
    lease_seconds: float = 30.0
    shutdown_timeout: float = 30.0
    schedule: bool = True
    max_crashes: int = 3

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ConfigurationError(
                f"pool {self.pool!r} is unknown; use one of {', '.join(POOLS)}"
            )
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.lease_seconds < 0.5:
            raise ConfigurationError(
                f"lease_seconds must be at least 0.5, not {self.lease_seconds}"
            )
        if self.shutdown_timeout < 0:
            raise ConfigurationError("shutdown_timeout must be 0 or more seconds")
        if self.queues is not None and not self.queues:
            raise ConfigurationError("queues must name at least one queue (or be None for all)")


def default_pool(settings: WorkerSettings, executor: JobExecutor, complete: Any) -> Pool:
    if settings.pool == "async":
        from conveyor.worker.pools.aio import AsyncPool

        return AsyncPool(settings.concurrency, executor, complete)
    if settings.pool == "process":
        from conveyor.worker.pools.process import ProcessPool, find_app_ref

        return ProcessPool(
            settings.concurrency,
            executor,
            complete,
            app_ref=find_app_ref(executor.registry),
            max_tasks_per_child=settings.max_tasks_per_child,
            max_memory_per_child=settings.max_memory_per_child,
        )
    from conveyor.worker.pools.threads import ThreadPool

    return ThreadPool(settings.concurrency, executor, complete)
