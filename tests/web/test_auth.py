"""The token, the login cookie, CSRF, read-only mode and cross-site refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from conveyor.app import App
from tests.web.conftest import TOKEN


@pytest.fixture
def guarded(sqlite_app: App) -> Iterator[TestClient]:
    with TestClient(sqlite_app.asgi(token=TOKEN), follow_redirects=False) as c:
        yield c


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def log_in(client: TestClient) -> str:
    """Log in through the form; returns the CSRF token the dashboard's pages carry."""
    r = client.post("/login", data={"token": TOKEN, "next": "/queues"})
    assert r.status_code == 303 and r.headers["location"] == "/queues"
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text).group(1)


def test_every_route_but_healthz_needs_the_token(guarded: TestClient) -> None:
    assert guarded.get("/healthz").status_code == 200
    for path in ("/api/jobs", "/api/queues", "/api/workers", "/api/schedules", "/metrics",
                 "/openapi.json", "/api/events", "/api/jobs/x/events", "/"):  # fmt: skip
        r = guarded.get(path)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    assert guarded.get("/api/jobs", headers=bearer("wrong")).status_code == 401
    assert guarded.get("/api/jobs", headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert guarded.get("/api/jobs", headers=bearer()).status_code == 200
    assert guarded.post("/api/jobs", json={"task": "add", "args": [1, 2]}).status_code == 401


def test_a_browser_without_the_cookie_is_sent_to_the_login_form(guarded: TestClient) -> None:
    r = guarded.get("/queues", headers={"Accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/queues"
    assert "Log in" in guarded.get("/login").text


def test_login_sets_an_httponly_strict_cookie_that_is_not_the_token(guarded: TestClient) -> None:
    wrong = guarded.post("/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "not the right one" in wrong.text
    r = guarded.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/"  # never off-site
    for sneaky in ("/\t/evil.example/", "https://evil.example/", "/\\evil.example"):
        r = guarded.post("/login", data={"token": TOKEN, "next": sneaky})
        assert r.headers["location"] == "/", sneaky
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    assert guarded.get("/api/jobs").status_code == 200


def test_changes_made_with_the_cookie_need_the_csrf_token(
    sqlite_app: App, guarded: TestClient
) -> None:
    csrf = log_in(guarded)
    job = sqlite_app.registry.get("add").delay(1, 2)
    refused = guarded.post(f"/api/jobs/{job.id}/cancel")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
    assert (
        guarded.post(f"/api/jobs/{job.id}/cancel", headers={"X-CSRF-Token": "0" * 64}).status_code
        == 403
    )
    ok = guarded.post(f"/api/jobs/{job.id}/cancel", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["state"] == "cancelled"
    # the dashboard's forms carry it in a field
    no_field = guarded.post(f"/jobs/{job.id}/retry", data={})
    assert no_field.status_code == 403
    done = guarded.post(f"/jobs/{job.id}/retry", data={"csrf": csrf})
    assert done.status_code == 303 and sqlite_app.job(job.id).state.value == "queued"


def test_bearer_requests_need_no_csrf_token(sqlite_app: App, guarded: TestClient) -> None:
    job = sqlite_app.registry.get("add").delay(1, 2)
    assert guarded.post(f"/api/jobs/{job.id}/cancel", headers=bearer()).status_code == 200


def test_logout_clears_the_cookie(guarded: TestClient) -> None:
    log_in(guarded)
    r = guarded.post("/logout")
    assert r.status_code == 303
    assert guarded.get("/api/jobs").status_code == 401


def test_the_token_comes_from_conveyor_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("CONVEYOR_TOKEN", "from-env")
    app = App(f"sqlite:///{tmp_path}/env.db")
    with TestClient(app.asgi()) as c:
        assert c.get("/api/jobs").status_code == 401
        assert c.get("/api/jobs", headers=bearer("from-env")).status_code == 200
    app.close()


def test_read_only_refuses_every_change_with_403(sqlite_app: App) -> None:
    job = sqlite_app.registry.get("add").delay(1, 2)
    with TestClient(sqlite_app.asgi(read_only=True)) as c:
        assert c.get("/api/jobs").status_code == 200
        for method, path in (
            ("POST", "/api/jobs"),
            ("POST", f"/api/jobs/{job.id}/cancel"),
            ("DELETE", f"/api/jobs/{job.id}"),
            ("POST", f"/api/jobs/{job.id}/retry"),
            ("POST", "/api/queues/default/purge"),
            ("POST", "/api/jobs/retry-failed"),
            ("POST", f"/jobs/{job.id}/cancel"),
        ):
            r = c.request(method, path, json={"task": "add"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "read_only", path
        page = c.get(f"/jobs/{job.id}").text
        assert "Cancel</button>" not in page and "read-only" in page
    assert sqlite_app.job(job.id).state.value == "queued"


def test_cross_site_changes_are_refused_without_a_token(sqlite_app: App) -> None:
    job = sqlite_app.registry.get("add").delay(1, 2)
    with TestClient(sqlite_app.asgi()) as c:
        r = c.post(f"/api/jobs/{job.id}/cancel", headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site"
        # a form posted from another site has no CSRF token either
        assert c.post(f"/jobs/{job.id}/cancel", data={}).status_code == 403
    assert sqlite_app.job(job.id).state.value == "queued"
