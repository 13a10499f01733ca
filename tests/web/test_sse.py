"""Server-sent events read by a real HTTP client (httpx) from a real uvicorn server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conveyor.app import App
from tests.web.conftest import Server, wait_state

pytestmark = pytest.mark.slow


def read_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Frames as dicts: ``id``, ``event``, ``data`` (parsed), or ``comment``."""
    frame: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif not line:
            if frame:
                yield frame
                frame = {}
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            frame[field] = json.loads(value) if field == "data" else value


def test_a_jobs_stream_carries_progress_in_order_and_ends_when_final(
    app: App, server: Server, worker: object
) -> None:
    job = app.registry.get("steps").apply_async((5,), {"pause": 0.1}, countdown=0.5)
    seen: list[dict[str, Any]] = []
    with (
        server.client(timeout=30) as client,
        client.stream("GET", f"/api/jobs/{job.id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for frame in read_events(response):
            if "data" in frame:
                seen.append(frame)
    # the stream ended by itself once the job was final
    assert seen[0]["data"]["job_id"] == job.id and "id" not in seen[0]  # the opening snapshot
    assert all(f["event"] == "job" for f in seen)
    assert set(seen[0]["data"]) == {"job_id", "task", "state", "progress", "at"}
    percents = [f["data"]["progress"]["percent"] for f in seen if f["data"]["progress"]]
    assert percents == sorted(percents) and percents[-1] == 100
    assert seen[-1]["data"]["state"] == "succeeded"
    ids = [int(f["id"]) for f in seen[1:]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_last_event_id_resumes_after_it(app: App, server: Server, worker: object) -> None:
    job = app.registry.get("steps").apply_async((4,), {"pause": 0.05}, countdown=0.5)
    with server.client(timeout=30) as client:
        with client.stream("GET", f"/api/jobs/{job.id}/events") as response:
            frames = [f for f in read_events(response) if "id" in f]
        wait_state(app, job.id, "succeeded")
        cut = frames[1]["id"]
        with client.stream(
            "GET", f"/api/jobs/{job.id}/events", headers={"Last-Event-ID": cut}
        ) as response:
            again = [f for f in read_events(response) if "data" in f]
    # resumed from the event after ``cut``: nothing before it comes again
    assert [f["id"] for f in again if "id" in f] == [f["id"] for f in frames[2:]]
    bad = httpx.get(f"{server.url}/api/jobs/{job.id}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400


def test_a_final_or_unknown_job(app: App, server: Server) -> None:
    job = app.registry.get("add").delay(1, 2)
    app.job(job.id).cancel()
    with server.client(timeout=10) as client:
        body = client.get(f"/api/jobs/{job.id}/events").text
        assert body.count("event: job") == 1 and '"state": "cancelled"' in body
        r = client.get("/api/jobs/unknown/events")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_the_all_jobs_stream_sends_every_change_and_heartbeats(app: App, server: Server) -> None:
    add = app.registry.get("add")
    with server.client(timeout=30) as client, client.stream("GET", "/api/events") as response:
        frames = read_events(response)
        assert next(frames) == {"comment": "connected"}
        job = add.delay(1, 2)
        got = []
        for frame in frames:
            got.append(frame)
            if frame.get("data", {}).get("job_id") == job.id:
                break
        app.job(job.id).cancel()
        for frame in frames:
            got.append(frame)
            if frame.get("data", {}).get("state") == "cancelled":
                break
        # heartbeat every 0.5 s in this server: wait for one
        deadline = time.monotonic() + 10
        for frame in frames:
            got.append(frame)
            if frame.get("comment") == "heartbeat" or time.monotonic() > deadline:
                break
    assert {"comment": "heartbeat"} in got
    states = [f["data"]["state"] for f in got if f.get("data", {}).get("job_id") == job.id]
    assert states == ["queued", "cancelled"]


def test_progress_reaches_a_reader_quickly(app: App, server: Server, worker: object) -> None:
    """API.md: within 100 ms on one machine, from ``conveyor.progress()`` in the task to the
    reader. Tests do not assert speed: this one prints the lags and checks a generous bound."""
    job = app.registry.get("stamped").apply_async((10, 0.2), countdown=1.0)
    lags = []
    with (
        server.client(timeout=30) as client,
        client.stream("GET", f"/api/jobs/{job.id}/events") as response,
    ):
        for frame in read_events(response):
            progress = frame.get("data", {}).get("progress")
            if progress and "id" in frame:
                lags.append(time.time() - progress["data"]["sent"])
    assert len(lags) >= 5 and max(lags) < 5.0  # the first may come before the stream opened
    lags.sort()
    print(f"progress lag: p50 {lags[5] * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms")
