"""/metrics: Prometheus text format read from the store, one registry per app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from conveyor.app import App
from conveyor.web.metrics import NAMES
from tests.web.conftest import wait_for, wait_state


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_report_jobs_queues_run_times_failures_retries_and_workers(
    app: App, client: TestClient, worker: object
) -> None:
    add, boom, flaky = (app.registry.get(n) for n in ("add", "boom", "flaky"))
    for job in [add.delay(1, 2), add.delay(3, 4), boom.delay("no"), flaky.delay()]:
        wait_state(app, job.id, "succeeded", "failed")
    hold = app.registry.get("hold").delay(30)
    wait_state(app, hold.id, "running")
    wait_for(lambda: samples(client).get(("conveyor_worker_busy_slots", ())) == 1)
    m = samples(client)
    text = client.get("/metrics").text
    for name in NAMES:
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert m[("conveyor_jobs", (("queue", "default"), ("state", "succeeded")))] == 2
    assert m[("conveyor_jobs", (("queue", "risky"), ("state", "failed")))] == 1
    assert m[("conveyor_job_run_seconds_count", (("task", "add"),))] == 2
    assert m[("conveyor_job_run_seconds_bucket", (("le", "+Inf"), ("task", "add")))] == 2
    assert m[("conveyor_job_failures_total", (("error_type", "ValueError"), ("task", "boom")))] == 1
    assert (
        m[("conveyor_job_failures_total", (("error_type", "ConnectionError"), ("task", "flaky")))]
        == 1
    )
    assert m[("conveyor_job_retries_total", (("task", "flaky"),))] == 1
    assert m[("conveyor_workers", ())] == 1 and m[("conveyor_worker_slots", ())] == 4
    app.job(hold.id).cancel()


def test_queue_depth_and_the_age_of_the_oldest_waiting_job(app: App, client: TestClient) -> None:
    app.registry.get("add").delay(1, 2)
    wait_for(
        lambda: (
            samples(client)[("conveyor_queue_oldest_waiting_seconds", (("queue", "default"),))]
            > 0.05
        )
    )
    m = samples(client)
    assert m[("conveyor_queue_depth", (("queue", "default"),))] == 1


def test_two_apps_in_one_process_keep_their_own_series(app: App, sqlite_app: App) -> None:
    app.registry.get("add").delay(1, 2)
    with TestClient(app.asgi()) as one, TestClient(sqlite_app.asgi()) as two:
        assert samples(one)[("conveyor_queue_depth", (("queue", "default"),))] == 1
        assert ("conveyor_queue_depth", (("queue", "default"),)) not in samples(two)
