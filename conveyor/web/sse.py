"""Server-sent events: every change of one job until it is final, or of all jobs.

Each event is ``event: job`` with the event's ``id:``, so a browser that reconnects sends
``Last-Event-ID`` and the stream resumes after it (from the app's event stream, which keeps
recent events). A comment line every ``heartbeat_seconds`` keeps proxies from closing an idle
stream; at each heartbeat a job's stream also reads the job once, so it ends even if the
final event was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from conveyor.job import JobInfo, State
from conveyor.web import shapes
from conveyor.web.api import job_or_404, the_app
from conveyor.web.protocol import Event

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_DONE = object()


def frame(data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: job\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def last_event_id(request: Request) -> str | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return shapes.parse_text(raw, "Last-Event-ID") if raw else None


async def _pump(events: AsyncIterator[Event], into: asyncio.Queue[Any]) -> None:
    try:
        async for event in events:
            await into.put(event)
    except Exception as exc:  # the store went away: the stream ends, the client reconnects
        await into.put(exc)
    finally:
        await into.put(_DONE)


async def with_heartbeats(
    events: AsyncIterator[Event], seconds: float
) -> AsyncIterator[Event | None]:
    """The events, with a None whenever ``seconds`` pass without one."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
    pump = asyncio.create_task(_pump(events, queue))
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), seconds)
            except TimeoutError:
                yield None
                continue
            if item is _DONE or isinstance(item, Exception):
                return
            yield item
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def stream(body: AsyncIterator[str]) -> Response:
    return StreamingResponse(body, media_type="text/event-stream", headers=_HEADERS)


async def job_events(request: Request) -> Response:
    app, job_id = the_app(request), request.path_params["id"]
    after = last_event_id(request)
    # subscribe before reading the job, so no change falls between the two
    events = app.aevents(job_id, after=after)
    try:
        info: JobInfo = await run_in_threadpool(job_or_404, app, job_id)
    except Exception:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
        raise
    seconds: float = request.app.state.heartbeat_seconds

    async def body() -> AsyncIterator[str]:
        if after is None or info.state.is_final:
            yield frame(shapes.snapshot_json(info))
        if info.state.is_final:
            return
        async for event in with_heartbeats(events, seconds):
            if event is None:
                now = await run_in_threadpool(job_or_404, app, job_id)
                if now.state.is_final:
                    yield frame(shapes.snapshot_json(now))
                    return
                yield ": heartbeat\n\n"
                continue
            yield frame(shapes.event_json(event), event.id)
            if State(event.state).is_final:
                return

    return stream(body())


async def all_events(request: Request) -> Response:
    app = the_app(request)
    events = app.aevents(None, after=last_event_id(request))
    seconds: float = request.app.state.heartbeat_seconds

    async def body() -> AsyncIterator[str]:
        yield ": connected\n\n"
        async for event in with_heartbeats(events, seconds):
            if event is None:
                yield ": heartbeat\n\n"
            else:
                yield frame(shapes.event_json(event), event.id)

    return stream(body())


routes = [
    Route("/api/jobs/{id}/events", job_events, methods=["GET"]),
    Route("/api/events", all_events, methods=["GET"]),
]
