"""Server-sent events: every change of one job until it is final, or of all jobs.

Each event is ``event: job`` with the store's event ``id:``, so a browser that reconnects
sends ``Last-Event-ID`` and the stream resumes right after it. The stream reads the app's
shared event feed (``aread_events``), waiting up to ``heartbeat_seconds`` at a time; a wait
that brings nothing sends a comment line, which keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from conveyor.errors import InvalidArgument
from conveyor.inspection import check_event_id
from conveyor.web import shapes
from conveyor.web.api import job_or_404, known_params, the_app
from conveyor.web.errors import bad_request

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: job\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def resume_after(request: Request) -> int | None:
    """``Last-Event-ID`` (or ``?last_event_id=`` for clients that cannot set headers)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    try:
        return check_event_id(raw or None)
    except InvalidArgument as exc:
        raise bad_request(str(exc)) from None


def stream(body: AsyncIterator[str]) -> Response:
    return StreamingResponse(body, media_type="text/event-stream", headers=_HEADERS)


async def job_events(request: Request) -> Response:
    known_params(request, "last_event_id")
    app, job_id = the_app(request), request.path_params["id"]
    after = resume_after(request)
    seconds: float = request.app.state.heartbeat_seconds
    # Take the feed's position first, then read the job: a change in between is an event
    # after that position, so nothing falls between the snapshot and the stream.
    if after is None:
        _, after = await app.aread_events(None, job_id=job_id, timeout=0)
        resumed = False
    else:
        resumed = True
    info = await run_in_threadpool(job_or_404, app, job_id)

    async def body() -> AsyncIterator[str]:
        position = after
        if not resumed:
            yield frame(shapes.snapshot_json(info))
            if info.state.is_final:
                return
        # a resumed stream of a job that ended meanwhile only catches up: no need to wait
        wait = 0.0 if info.state.is_final else seconds
        while True:
            events, position = await app.aread_events(position, job_id=job_id, timeout=wait)
            wait = seconds
            if not events:
                # quiet for a while: make sure the job did not end (or vanish) unseen
                now = await run_in_threadpool(job_or_404, app, job_id)
                if now.state.is_final:
                    yield frame(shapes.snapshot_json(now))
                    return
                yield ": heartbeat\n\n"
                continue
            for event in events:
                yield frame(shapes.event_json(event), event.id)
                if event.state.is_final:
                    return

    return stream(body())


async def all_events(request: Request) -> Response:
    known_params(request, "last_event_id")
    app = the_app(request)
    after = resume_after(request)
    seconds: float = request.app.state.heartbeat_seconds
    if after is None:
        _, after = await app.aread_events(None, timeout=0)

    async def body() -> AsyncIterator[str]:
        position = after
        yield ": connected\n\n"
        while True:
            events, position = await app.aread_events(position, timeout=seconds)
            if not events:
                yield ": heartbeat\n\n"
            for event in events:
                yield frame(shapes.event_json(event), event.id)

    return stream(body())


routes = [
    Route("/api/jobs/{id}/events", job_events, methods=["GET"]),
    Route("/api/events", all_events, methods=["GET"]),
]
