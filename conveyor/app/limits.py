"""Cluster-wide limits as this process declares them: remembered here, so that they reach
the store whenever the backend opens, and checked here when a job names one."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from conveyor.backends import Backend
from conveyor.config import Settings
from conveyor.errors import ConfigurationError
from conveyor.limits import (
    LimitInfo,
    LimitSpec,
    Rate,
    job_refs,
    limit_key_of,
    shared_limit,
    task_limit,
)
from conveyor.task import TaskOptions


class Limits:
    settings: Settings
    _limits: dict[str, LimitSpec]
    _backend: Backend | None

    if TYPE_CHECKING:  # App's own property, which opens the store on first use

        @property
        def backend(self) -> Backend: ...

    def limit(
        self, name: str, *, rate: str | Rate | None = None, concurrency: int | None = None
    ) -> LimitSpec:
        """Declare (or change) a limit shared by the tasks that name it in ``limits=[...]``:
        at most ``rate`` starts ("N/s", "N/m", "N/h") and ``concurrency`` running at once,
        across the cluster. Called again with other numbers, it changes the limit in the
        store, for every worker at once."""
        spec = shared_limit(name, rate=rate, concurrency=concurrency)
        self._declare(spec)
        return spec

    def limits(self) -> list[LimitInfo]:
        """Every limit the store knows, with its current use per key."""
        if self.settings.eager:
            return []
        return self.backend.limits(now=time.time())

    def _declare(self, spec: LimitSpec) -> None:
        self._limits[spec.name] = spec
        if self._backend is not None and not self.settings.eager:
            self._backend.set_limit(spec, now=time.time())

    def _refs(
        self, opts: TaskOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[list[str]]:
        """The limits a new job of the task counts against (``meta["limits"]``)."""
        for name in opts.limits:
            if name not in self._limits:
                raise ConfigurationError(
                    f"task {opts.name!r} counts against limit {name!r}, which this app never "
                    f"declared; call app.limit({name!r}, rate=..., concurrency=...) first"
                )
        key = (
            "" if opts.limit_key is None else limit_key_of(opts.name, opts.limit_key, args, kwargs)
        )
        own = task_limit(opts.name, opts.rate_limit, opts.concurrency)
        return job_refs(own, opts.limits, key)
