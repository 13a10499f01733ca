"""OpenTelemetry tracing (``pip install 'conveyor[otel]'``): ``instrument(app)``.

A PRODUCER span ``enqueue <task>`` around each write of new jobs, whose context travels in
the job's ``meta["trace"]`` (W3C trace context, by the configured propagator), and a CONSUMER
span ``run <task>`` around each run, child of the enqueue span: a web request's trace shows
the background job it started, on whichever worker ran it. Built on ``app.around_enqueue``
and ``app.around_job``. Call it where the app is defined, so workers (and process-pool
children, which import that module) are instrumented too; they export through whatever
tracer provider their process configured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace

from conveyor.app import App
from conveyor.context import JobContext
from conveyor.job import JobRecord

#: the key of ``meta`` that carries the trace context from delay() to the worker
META_KEY = "trace"
_SCOPE = "conveyor"


def instrument(app: App, *, tracer_provider: trace.TracerProvider | None = None) -> App:
    """Trace ``app``'s enqueues and runs (the global tracer provider unless one is given)."""
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    @contextmanager
    def enqueue_span(records: Sequence[JobRecord]) -> Iterator[None]:
        first = records[0]
        name = f"enqueue {first.task}" if len(records) == 1 else "enqueue_many"
        attributes: dict[str, Any] = {
            "messaging.system": "conveyor",
            "messaging.operation.type": "send",
            "messaging.destination.name": first.queue,
        }
        if len(records) == 1:
            attributes["messaging.message.id"] = first.id
            attributes["conveyor.task"] = first.task
        else:
            attributes["messaging.batch.message_count"] = len(records)
        with tracer.start_as_current_span(
            name, kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            for record in records:
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                record.meta[META_KEY] = carrier
            yield

    @contextmanager
    def run_span(ctx: JobContext) -> Iterator[None]:
        parent = propagate.extract(ctx.meta.get(META_KEY) or {})
        attributes: dict[str, Any] = {
            "messaging.system": "conveyor",
            "messaging.operation.type": "process",
            "messaging.destination.name": ctx.queue,
            "messaging.message.id": ctx.id,
            "conveyor.task": ctx.task,
            "conveyor.attempt": ctx.attempt,
        }
        with tracer.start_as_current_span(
            f"run {ctx.task}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
        ):
            yield

    app.around_enqueue(enqueue_span)
    app.around_job(run_span)
    return app


__all__ = ["META_KEY", "instrument"]
