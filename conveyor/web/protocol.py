"""What the web face needs from the app it is handed: the inspection calls every face uses
(``conveyor.inspection.InspectionApp``), plus the registry and ``submit`` to enqueue.
``conveyor.web`` never imports ``conveyor.app``, which sits above it."""

from __future__ import annotations

from typing import Any, Protocol

from conveyor.canvas import Workflow
from conveyor.inspection import InspectionApp
from conveyor.job import Job, State
from conveyor.limits import LimitInfo
from conveyor.registry import Registry
from conveyor.task import CallOptions


class WebApp(InspectionApp, Protocol):
    """The app as the HTTP API, the dashboard and /metrics see it (``conveyor.App`` is one)."""

    registry: Registry

    def workflow(self, workflow_id: str) -> Workflow: ...

    def limits(self) -> list[LimitInfo]: ...

    def workflow_jobs(
        self, workflow_id: str
    ) -> list[tuple[str, str, bool, State | None]] | None: ...

    def submit(
        self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Job: ...
