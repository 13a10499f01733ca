"""Tracing: an enqueue span and a run span per job, the run a child of the enqueue, both in
the trace of the request that called delay(); recorded by the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import conveyor
from conveyor.integrations.otel import instrument


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def app(tmp_path: Path, provider: TracerProvider) -> Iterator[conveyor.App]:
    app = instrument(conveyor.App(f"sqlite:///{tmp_path}/jobs.db"), tracer_provider=provider)
    yield app
    app.close()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    return next(s for s in spans if s.name == name)


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_a_requests_trace_shows_its_background_job(
    app: conveyor.App, provider: TracerProvider, exporter: InMemorySpanExporter, pool: str
) -> None:
    @app.task(name="report")
    def report(n: int) -> int:
        return n * 2

    tracer = provider.get_tracer("web")
    with tracer.start_as_current_span("GET /reports") as request:
        job = report.delay(21)
    with app.worker(concurrency=1, pool=pool, schedule=False):
        assert job.result(timeout=30) == 42

    spans = exporter.get_finished_spans()
    enqueue, run = by_name(spans, "enqueue report"), by_name(spans, "run report")
    trace_id = request.get_span_context().trace_id
    assert enqueue.context.trace_id == run.context.trace_id == trace_id
    assert (
        enqueue.parent is not None and enqueue.parent.span_id == request.get_span_context().span_id
    )
    assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    assert (enqueue.kind, run.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert run.attributes is not None and run.attributes["messaging.message.id"] == job.id
    assert run.attributes["conveyor.attempt"] == 1


def test_a_failed_run_is_an_error_span_and_batches_share_one_enqueue_span(
    app: conveyor.App, exporter: InMemorySpanExporter
) -> None:
    @app.task(name="boom")
    def boom(n: int) -> None:
        raise ValueError(f"boom {n}")

    jobs = app.enqueue_many(boom.s(i) for i in range(3))
    with app.worker(concurrency=1, schedule=False):
        for job in jobs:
            with pytest.raises(conveyor.JobFailed):
                job.result(timeout=30)
    spans = exporter.get_finished_spans()
    batch = by_name(spans, "enqueue_many")
    runs = [s for s in spans if s.name == "run boom"]
    assert len(runs) == 3
    assert all(r.parent is not None and r.parent.span_id == batch.context.span_id for r in runs)
    assert all(r.status.status_code is StatusCode.ERROR for r in runs)
    assert batch.attributes is not None and batch.attributes["messaging.batch.message_count"] == 3


def test_async_delay_carries_the_callers_context(
    app: conveyor.App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    import asyncio

    @app.task(name="ping")
    def ping() -> str:
        return "pong"

    async def handler() -> conveyor.Job:
        with provider.get_tracer("web").start_as_current_span("POST /ping"):
            return await ping.adelay()

    asyncio.run(handler())
    spans = exporter.get_finished_spans()
    assert by_name(spans, "enqueue ping").parent is not None


def test_importing_conveyor_does_not_import_opentelemetry() -> None:
    code = "import sys, conveyor; conveyor.App('memory://'); print('opentelemetry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_workflow_is_one_enqueue_span_and_its_steps_run_in_its_trace(
    app: conveyor.App, exporter: InMemorySpanExporter
) -> None:
    @app.task(name="inc")
    def inc(n: int) -> int:
        return n + 1

    job = conveyor.chain(inc.s(1), inc.s(), inc.s()).delay()
    with app.worker(concurrency=1, schedule=False):
        assert job.result(timeout=30) == 4
    spans = exporter.get_finished_spans()
    batch = by_name(spans, "enqueue_many")
    runs = [s for s in spans if s.name == "run inc"]
    assert len(runs) == 3
    assert {r.context.trace_id for r in runs} == {batch.context.trace_id}
