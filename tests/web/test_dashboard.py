"""The dashboard's pages and forms, server-rendered (what a browser without JavaScript
sees); the real browser drives it in test_browser.py."""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from conveyor.app import App
from tests.web.conftest import wait_for, wait_state

HTML = {"Accept": "text/html"}


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)


def test_the_jobs_page_lists_filters_and_pages(app: App, client: TestClient) -> None:
    add, boom = app.registry.get("add"), app.registry.get("boom")
    ids = [add.delay(i, i).id for i in range(3)]
    other = boom.delay("x").id
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert all(i[-10:] in page.text for i in [*ids, other])
    only = client.get("/", params={"task": "boom"}).text
    assert other[-10:] in only and ids[0][-10:] not in only
    first = client.get("/", params={"limit": 2}).text
    older = re.search(r'href="/\?([^"]*cursor=[^"]+)" rel="next"', first).group(1)
    second = client.get("/?" + older.replace("&amp;", "&")).text
    assert ids[0][-10:] in second and ids[2][-10:] not in second
    assert client.get("/", params={"state": "nope"}).status_code == 400


def test_search_by_id_opens_the_job(app: App, client: TestClient) -> None:
    job = app.registry.get("add").delay(1, 2)
    r = client.get("/", params={"id": job.id}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/jobs/{job.id}"
    missing = client.get("/", params={"id": "no-such-job"})
    assert missing.status_code == 404 and "No job with id" in missing.text


def test_a_failed_job_shows_error_and_traceback_and_retries_from_its_form(
    app: App, client: TestClient, worker: object
) -> None:
    job = app.registry.get("boom").delay("it broke")
    wait_state(app, job.id, "failed")
    page = client.get(f"/jobs/{job.id}").text
    assert "ValueError" in page and "it broke" in page and "Traceback" in page
    r = client.post(f"/jobs/{job.id}/retry", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/jobs/{job.id}"


def test_everything_a_job_carries_is_escaped(app: App, client: TestClient) -> None:
    nasty = "<script>alert('x')</script>"
    job = app.registry.get("echo").apply_async((nasty,), {"title": nasty}, queue=nasty)
    for path in ("/", f"/jobs/{job.id}", "/queues"):
        text = client.get(path).text
        assert "<script>alert" not in text, path
    page = client.get(f"/jobs/{job.id}")
    assert "&lt;script&gt;alert(" in page.text
    # and were escaping ever to fail, the page runs no script but its own file
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_queues_workers_schedules_pages(app: App, client: TestClient, worker: object) -> None:
    job = app.registry.get("hold").delay(30)
    wait_state(app, job.id, "running")
    assert "default" in client.get("/queues").text

    def shows_it() -> str | None:
        text = client.get("/workers").text
        return text if job.id[-10:] in text else None

    workers = wait_for(shows_it)
    assert "hourly" in client.get("/schedules").text
    csrf = csrf_of(workers)
    client.post(f"/jobs/{job.id}/cancel", data={"csrf": csrf})
    wait_state(app, job.id, "cancelled")


def test_purge_and_retry_all_failed_forms(app: App, client: TestClient) -> None:
    add = app.registry.get("add")
    add.delay(1, 1)
    csrf = csrf_of(client.get("/queues").text)
    r = client.post("/queues/default/purge", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/queues"
    assert app.queues().get("default", {}).get("queued", 0) == 0
    r = client.post("/retry-failed", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303


def test_built_without_io_and_mounted_under_a_prefix(namespace: str) -> None:
    # nothing listens on port 1: building and mounting must not touch the store
    app = App("redis://127.0.0.1:1/0", namespace=namespace)
    outer = Starlette(routes=[Mount("/jobs", app=app.asgi())])
    with TestClient(outer) as c:
        assert c.get("/jobs/openapi.json").status_code == 200
        assert c.get("/jobs/static/app.css").status_code == 200
        login = c.get("/jobs/login", follow_redirects=False)
        assert login.headers["location"] == "/jobs/"
    app.close()


def test_pages_link_under_the_mount_prefix(sqlite_app: App) -> None:
    job = sqlite_app.registry.get("add").delay(1, 2)
    outer = Starlette(routes=[Mount("/jobs", app=sqlite_app.asgi())])
    with TestClient(outer) as c:
        page = c.get("/jobs/").text
        assert f'href="/jobs/jobs/{job.id}"' in page and 'href="/jobs/static/app.css"' in page
        assert c.get(f"/jobs/api/jobs/{job.id}").json()["id"] == job.id


def test_limits_page_shows_each_limit_and_its_keys(app: App, client: TestClient) -> None:
    app.backend.ping()  # an open store takes a declared limit at once
    app.limit("bedrock", rate="50/m", concurrency=4)
    text = client.get("/limits").text
    assert "bedrock" in text and "50/m" in text and 'aria-current="page">Limits' in text
