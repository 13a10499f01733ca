"""Every JSON route of API.md's table and the shapes it gives, on SQLite and a real Redis."""

from __future__ import annotations

from datetime import datetime

from starlette.testclient import TestClient

import conveyor
from conveyor.app import App
from tests.web.conftest import wait_for, wait_state

JOB_KEYS = {
    "id", "task", "args", "kwargs", "queue", "priority", "state", "attempts", "progress",
    "result", "error", "created_at", "eta", "started_at", "finished_at", "worker", "key",
    "workflow",
}  # fmt: skip


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_list_jobs_is_newest_first_with_the_job_shape(app: App, client: TestClient) -> None:
    first = app.registry.get("add").delay(1, 2)
    second = app.registry.get("add").delay(3, 4)
    body = client.get("/api/jobs").json()
    assert [j["id"] for j in body["items"]] == [second.id, first.id]
    assert body["next_cursor"] is None
    job = body["items"][0]
    assert set(job) == JOB_KEYS
    assert job["args"] == [3, 4] and job["kwargs"] == {} and job["state"] == "queued"
    assert datetime.fromisoformat(job["created_at"]).utcoffset().total_seconds() == 0


def test_pages_follow_the_cursor_and_new_jobs_do_not_shift_them(
    app: App, client: TestClient
) -> None:
    add = app.registry.get("add")
    ids = [add.delay(i, i).id for i in range(5)][::-1]
    page1 = client.get("/api/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page1["items"]] == ids[:2]
    add.delay(99, 99)  # arrives meanwhile: the next page is unchanged
    page2 = client.get("/api/jobs", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert [j["id"] for j in page2["items"]] == ids[2:4]
    page3 = client.get("/api/jobs", params={"limit": 2, "cursor": page2["next_cursor"]}).json()
    assert [j["id"] for j in page3["items"]] == ids[4:] and page3["next_cursor"] is None


def test_list_filters_by_state_task_and_queue(app: App, client: TestClient) -> None:
    add = app.registry.get("add").delay(1, 1)
    boom = app.registry.get("boom").delay("x")
    assert app.job(add.id).cancel()
    ids = lambda **p: [j["id"] for j in client.get("/api/jobs", params=p).json()["items"]]  # noqa: E731
    assert ids(state="cancelled") == [add.id]
    assert ids(task="boom") == [boom.id]
    assert ids(queue="risky") == [boom.id]
    assert ids(queue="risky", state="cancelled") == []


def test_bad_limit_cursor_or_state_is_a_400(client: TestClient) -> None:
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"state": "sleeping"},
        {"cursor": "not a cursor!"},
        {"cursor": "x" * 2000},
    ):
        assert_error(client.get("/api/jobs", params=params), 400, "bad_request")
    assert client.get("/api/jobs", params={"limit": 1000}).status_code == 200


def test_one_job_and_unknown_ids(app: App, client: TestClient) -> None:
    job = app.registry.get("add").delay(2, 3)
    body = client.get(f"/api/jobs/{job.id}").json()
    assert body["id"] == job.id and body["task"] == "add"
    assert_error(client.get("/api/jobs/nope"), 404, "not_found")
    assert_error(client.post("/api/jobs/nope/cancel"), 404)
    assert_error(client.post("/api/jobs/nope/retry"), 404)
    assert_error(client.delete("/api/jobs/nope"), 404)


def test_enqueue_answers_202_with_the_job(app: App, client: TestClient) -> None:
    r = client.post(
        "/api/jobs",
        json={"task": "add", "args": [1, 2], "queue": "fast", "priority": 7, "key": "k1"},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert set(job) == JOB_KEYS
    assert (job["task"], job["args"], job["queue"], job["priority"], job["key"]) == (
        "add", [1, 2], "fast", 7, "k1",
    )  # fmt: skip
    again = client.post("/api/jobs", json={"task": "add", "args": [1, 2], "key": "k1"}).json()
    assert again["id"] == job["id"]  # the idempotency key holds
    later = client.post("/api/jobs", json={"task": "add", "args": [1, 2], "countdown": 60})
    assert later.json()["state"] == "scheduled" and later.json()["eta"] is not None


def test_enqueue_refuses_malformed_bodies_with_400(client: TestClient) -> None:
    for body in (
        b"not json",
        b"[1, 2]",
        b'{"args": [1]}',
        b'{"task": ""}',
        b'{"task": "add", "args": {"x": 1}}',
        b'{"task": "add", "kwargs": [1]}',
        b'{"task": "add", "args": false, "kwargs": {"x": 1, "y": 2}}',  # falsy is not absent
        b'{"task": "add", "args": [1, 2], "kwargs": []}',
        b'{"task": "add", "args": null, "kwargs": {"x": 1, "y": 2}}',
        b'{"task": "add", "args": [1, 2], "priority": 101}',
        b'{"task": "add", "args": [1, 2], "priority": true}',
        b'{"task": "add", "args": [1, 2], "countdown": -1}',
        b'{"task": "add", "args": [1, 2], "key": ""}',
        b'{"task": "add", "args": [1, 2], "surprise": 1}',
        b'{"task": "add", "args": [1, 2, 3]}',  # the task's signature is checked
        b"\xff\xfe",
    ):
        assert_error(client.post("/api/jobs", content=body), 400, "bad_request")


def test_bodies_over_16_mib_get_413(client: TestClient) -> None:
    big = b'{"task": "add", "args": ["' + b"x" * (16 * 1024 * 1024) + b'"]}'
    assert_error(client.post("/api/jobs", content=big), 413, "too_large")

    def chunks():
        yield b'{"task": "add", "args": ["'
        for _ in range(17):
            yield b"x" * (1024 * 1024)
        yield b'"]}'

    assert_error(client.post("/api/jobs", content=chunks()), 413, "too_large")


def test_cancel_and_retry(app: App, client: TestClient) -> None:
    job = app.registry.get("add").delay(1, 1)
    cancelled = client.post(f"/api/jobs/{job.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert_error(client.delete(f"/api/jobs/{job.id}"), 409, "conflict")
    retried = client.post(f"/api/jobs/{job.id}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "queued"
    assert_error(client.post(f"/api/jobs/{job.id}/retry"), 409, "conflict")
    assert client.delete(f"/api/jobs/{job.id}").json()["state"] == "cancelled"


def test_failed_jobs_show_their_error_and_retry_all_failed(
    app: App, client: TestClient, worker: object
) -> None:
    jobs = [app.registry.get("boom").delay(f"bad {i}") for i in range(3)]
    for job in jobs:
        wait_state(app, job.id, "failed")
    body = client.get(f"/api/jobs/{jobs[0].id}").json()
    assert body["error"]["type"] == "ValueError" and body["error"]["message"] == "bad 0"
    assert "Traceback" in body["error"]["traceback"]
    assert client.post("/api/jobs/retry-failed").json() == {"retried": 3}


def test_queues_and_purge(app: App, client: TestClient) -> None:
    add, boom = app.registry.get("add"), app.registry.get("boom")
    add.delay(1, 1)
    add.delay(2, 2)
    boom.delay("x")
    body = client.get("/api/queues").json()
    queues = {q["name"]: q for q in body["items"]}
    assert queues["default"]["depth"] == 2 and queues["default"]["states"]["queued"] == 2
    assert queues["risky"]["states"]["queued"] == 1 and queues["risky"]["states"]["failed"] == 0
    assert client.post("/api/queues/default/purge").json() == {"queue": "default", "purged": 2}
    assert client.post("/api/queues/nothing-here/purge").json()["purged"] == 0


def test_workers_show_what_each_runs_now(app: App, client: TestClient, worker: object) -> None:
    job = app.registry.get("hold").delay(30)
    wait_state(app, job.id, "running")

    def running() -> list:
        items = client.get("/api/workers").json()["items"]
        return [w for w in items if job.id in w["running"]]

    (w,) = wait_for(running)
    assert w["alive"] and w["concurrency"] == 4 and w["pool"] == "thread" and w["pid"] > 0
    assert {"host", "queues", "last_seen", "started_at", "processed", "failed"} <= set(w)
    assert client.post(f"/api/jobs/{job.id}/cancel").status_code == 200
    wait_state(app, job.id, "cancelled")


def test_schedules_list_periodic_tasks(client: TestClient) -> None:
    (hourly,) = client.get("/api/schedules").json()["items"]
    assert hourly["task"] == "hourly" and hourly["every"] == 3600 and hourly["cron"] is None
    assert hourly["next_run"] is not None and hourly["last_run"] is None


def test_limits_list_each_limit_with_its_use(app: App, client: TestClient) -> None:
    app.backend.ping()  # an open store takes a declared limit at once
    app.limit("bedrock", rate="50/m", concurrency=4)
    items = {item["name"]: item for item in client.get("/api/limits").json()["items"]}
    assert items["bedrock"]["rate"] == "50/m" and items["bedrock"]["concurrency"] == 4
    assert items["bedrock"]["running"] == 0 and isinstance(items["bedrock"]["keys"], list)


def test_healthz_openapi_and_json_errors_for_unknown_routes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/jobs/{id}/events" in doc["paths"]
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.put("/api/jobs"), 405, "method_not_allowed")


def test_healthz_is_503_when_the_store_does_not_answer(namespace: str) -> None:
    app = App("redis://127.0.0.1:1/0", namespace=namespace)  # nothing listens there
    with TestClient(app.asgi(), raise_server_exceptions=False) as c:
        assert_error(c.get("/healthz"), 503, "unavailable")
        assert_error(c.get("/api/jobs"), 503, "unavailable")
    app.close()


def test_results_that_json_cannot_hold_are_shown_plainly(
    app: App, client: TestClient, worker: object
) -> None:
    job = app.registry.get("echo").delay(b"\x00bytes", when=datetime(2024, 1, 2))
    wait_state(app, job.id, "succeeded")
    body = client.get(f"/api/jobs/{job.id}").json()
    assert body["kwargs"] == {"when": "2024-01-02T00:00:00"}
    assert body["result"]["kwargs"] == {"when": "2024-01-02T00:00:00"}


def test_a_workflow_and_its_jobs(app: App, client: TestClient) -> None:
    add = app.registry.get("add")
    last = conveyor.chain(add.s(1, 2), add.s(10)).delay()
    workflow = last.workflow
    assert workflow is not None
    body = client.get(f"/api/workflows/{workflow.id}").json()
    assert body["id"] == workflow.id and body["state"] == "running"
    assert [j["task"] for j in body["jobs"]] == ["add", "add"]
    assert client.get(f"/api/jobs/{last.id}").json()["workflow"] == workflow.id
    assert_error(client.get("/api/workflows/nope"), 404, "not_found")
