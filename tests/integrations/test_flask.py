"""Flask: every job runs inside the Flask app's app context, in every pool; the HTTP API and
dashboard are served under the prefix inside the Flask app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, current_app

import conveyor
from conveyor.errors import ConfigurationError
from conveyor.integrations.flask import init_app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[conveyor.App]:
    app = conveyor.App(f"sqlite:///{tmp_path}/jobs.db")
    yield app
    app.close()


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_jobs_run_inside_the_flask_app_context(app: conveyor.App, pool: str) -> None:
    flask_app = Flask("shop")
    flask_app.config["GREETING"] = "hello from flask"
    init_app(flask_app, app, url_prefix=None)

    @app.task(name="greet")
    def greet() -> str:
        return f"{current_app.name}: {current_app.config['GREETING']}"

    @app.task(name="agreet")
    async def agreet() -> str:
        return str(current_app.config["GREETING"])

    with app.worker(concurrency=1, pool=pool, schedule=False):
        assert greet.delay().result(timeout=30) == "shop: hello from flask"
        assert agreet.delay().result(timeout=30) == "hello from flask"
    assert flask_app.extensions["conveyor"] is app


def test_a_bad_prefix_is_refused(app: conveyor.App) -> None:
    with pytest.raises(ConfigurationError, match="url_prefix"):
        init_app(Flask("shop"), app, url_prefix="jobs")


def test_the_http_api_and_dashboard_are_served_under_the_prefix(app: conveyor.App) -> None:
    flask_app = Flask("shop")

    @flask_app.get("/")
    def home() -> str:
        return "shop home"

    init_app(flask_app, app, url_prefix="/jobs")

    @app.task(name="noop")
    def noop() -> None: ...

    job = noop.delay()
    client = flask_app.test_client()
    assert client.get("/").text == "shop home"
    listed = client.get("/jobs/api/jobs")
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json["items"]] == [job.id]
    assert client.get(f"/jobs/api/jobs/{job.id}").json["state"] == "queued"
    assert client.get("/jobs/api/jobs/unknown").status_code == 404
    page = client.get("/jobs/")
    assert page.status_code == 200 and "text/html" in page.content_type
