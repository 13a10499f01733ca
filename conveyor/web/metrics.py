"""``/metrics``: Prometheus text format from ``app.stats()``, read from the store at scrape
time, so every replica of the web app reports the same numbers. Each web app gets a registry
of its own, so two apps in one process never mix their series."""

from __future__ import annotations

import math
from collections.abc import Iterator

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

from conveyor.inspection import RUNTIME_BUCKETS, Stats, TaskStats
from conveyor.job import State
from conveyor.web.protocol import WebApp

#: every metric name, for docs/web.md and the tests
NAMES = (
    "conveyor_jobs",
    "conveyor_queue_depth",
    "conveyor_queue_oldest_waiting_seconds",
    "conveyor_job_run_seconds",
    "conveyor_jobs_succeeded_total",
    "conveyor_job_failures_total",
    "conveyor_job_retries_total",
    "conveyor_workers",
    "conveyor_worker_slots",
    "conveyor_worker_busy_slots",
)


class StoreCollector(Collector):
    """Reads ``app.stats()`` on each scrape; keeps nothing between scrapes."""

    def __init__(self, app: WebApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        stats = self.app.stats()
        yield from queue_metrics(stats)
        yield from task_metrics(stats)
        yield from worker_metrics(stats)


def queue_metrics(stats: Stats) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "conveyor_jobs", "Jobs in the store by queue and state", labels=["queue", "state"]
    )
    depth = GaugeMetricFamily(
        "conveyor_queue_depth", "Queued jobs (ready to run) per queue", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "conveyor_queue_oldest_waiting_seconds",
        "How long the oldest queued job of each queue has been ready to run",
        labels=["queue"],
    )
    for name, queue in sorted(stats.queues.items()):
        for state in State:
            jobs.add_metric([name, state.value], queue.counts.get(state, 0))
        depth.add_metric([name], queue.depth)
        oldest.add_metric([name], queue.oldest_waiting_seconds or 0.0)
    yield from (jobs, depth, oldest)


def _buckets(task: TaskStats) -> list[tuple[str, float]]:
    """The store counts per bucket; Prometheus wants cumulative counts up to +Inf."""
    out, total = [], 0
    for upper in RUNTIME_BUCKETS:
        total += task.runtime.get(upper, 0)
        out.append(("+Inf" if math.isinf(upper) else repr(upper), float(total)))
    return out


def task_metrics(stats: Stats) -> Iterator[Metric]:
    runs = HistogramMetricFamily(
        "conveyor_job_run_seconds",
        "Run time of finished attempts (succeeded or failed) by task",
        labels=["task"],
    )
    succeeded = CounterMetricFamily(
        "conveyor_jobs_succeeded", "Jobs that succeeded, by task", labels=["task"]
    )
    failures = CounterMetricFamily(
        "conveyor_job_failures",
        "Jobs that failed for good, by task and error type",
        labels=["task", "error_type"],
    )
    retries = CounterMetricFamily(
        "conveyor_job_retries", "Attempts that ended in a retry, by task", labels=["task"]
    )
    for name, task in sorted(stats.tasks.items()):
        runs.add_metric([name], _buckets(task), task.runtime_sum)
        succeeded.add_metric([name], task.succeeded)
        retries.add_metric([name], task.retries)
        for error_type, n in sorted(task.failures.items()):
            failures.add_metric([name, error_type], n)
    yield from (runs, succeeded, failures, retries)


def worker_metrics(stats: Stats) -> Iterator[Metric]:
    for name, help_text, value in (
        ("conveyor_workers", "Workers seen within the last minute", stats.workers),
        ("conveyor_worker_slots", "Job slots of those workers (their concurrency)", stats.slots),
        ("conveyor_worker_busy_slots", "Slots running a job now", stats.busy_slots),
    ):
        gauge = GaugeMetricFamily(name, help_text)
        gauge.add_metric([], value)
        yield gauge


def registry_for(app: WebApp) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(app))
    return registry


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
