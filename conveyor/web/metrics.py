"""``/metrics``: Prometheus text format from the store, read at scrape time, so every replica
of the web app reports the same numbers. Each app gets a registry of its own (two apps in one
process never mix their series)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.job import State
from conveyor.web.protocol import WebApp
from conveyor.web.shapes import worker_alive


class StoreCollector(Collector):
    """Reads the app's inspection calls on each scrape; keeps nothing between scrapes."""

    def __init__(self, app: WebApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        yield from self._workers()
        yield from self._stats()

    def _queues(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "conveyor_jobs", "Jobs in the store by state and queue", labels=["queue", "state"]
        )
        depth = GaugeMetricFamily(
            "conveyor_queue_depth", "Jobs waiting to run (queued) per queue", labels=["queue"]
        )
        for queue, counts in sorted(self.app.queues().items()):
            for state in State:
                jobs.add_metric([queue, state.value], counts.get(state, 0))
            depth.add_metric([queue], counts.get(State.QUEUED, 0))
        yield jobs
        yield depth

    def _workers(self) -> Iterator[Metric]:
        now = time.time()
        alive = [w for w in self.app.workers() if worker_alive(w, now)]
        count = GaugeMetricFamily("conveyor_workers", "Workers seen in the last minute")
        count.add_metric([], len(alive))
        slots = GaugeMetricFamily(
            "conveyor_worker_slots", "Job slots of live workers (concurrency)"
        )
        slots.add_metric([], sum(w.concurrency for w in alive))
        busy = GaugeMetricFamily(
            "conveyor_worker_busy_slots", "Slots of live workers running a job"
        )
        busy.add_metric([], sum(len(w.running) for w in alive))
        yield count
        yield slots
        yield busy

    def _stats(self) -> Iterator[Metric]:
        stats: Any = self.app.stats()
        oldest = GaugeMetricFamily(
            "conveyor_queue_oldest_waiting_seconds",
            "Age of the oldest queued job per queue",
            labels=["queue"],
        )
        for queue, seconds in sorted(_get(stats, "oldest_waiting_seconds", {}).items()):
            oldest.add_metric([queue], seconds)
        yield oldest
        runs = HistogramMetricFamily(
            "conveyor_job_run_seconds", "Run time of finished attempts by task", labels=["task"]
        )
        for task, hist in sorted(_get(stats, "run_seconds", {}).items()):
            buckets = [(_bound(b), c) for b, c in _get(hist, "buckets", [])]
            runs.add_metric([task], buckets, _get(hist, "sum", 0.0))
        yield runs
        retries = CounterMetricFamily(
            "conveyor_job_retries", "Retries scheduled by task", labels=["task"]
        )
        for task, n in sorted(_get(stats, "retries", {}).items()):
            retries.add_metric([task], n)
        yield retries
        failures = CounterMetricFamily(
            "conveyor_job_failures",
            "Failed jobs by task and error type",
            labels=["task", "error_type"],
        )
        for (task, error_type), n in sorted(_get(stats, "failures", {}).items()):
            failures.add_metric([task, error_type], n)
        yield failures


def _get(obj: Any, name: str, default: Any) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _bound(bound: Any) -> str:
    return "+Inf" if bound in (None, float("inf"), "+Inf") else repr(float(bound))


def registry_for(app: WebApp) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(app))
    return registry


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
