"""Fixtures for the web face: an app on SQLite and on a real Redis (``web_url``), its
Starlette app under a TestClient, a real uvicorn server on a free port, and a worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

import conveyor
from conveyor.app import App
from conveyor.web.asgi import build
from tests.conftest import url_for
from tests.servers import free_port

TOKEN = "s3cret-token"


def make_app(url: str, namespace: str) -> App:
    app = App(url, namespace=namespace)

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="boom", queue="risky")
    def boom(message: str) -> None:
        raise ValueError(message)

    @app.task(name="flaky", retries=1, retry_delay=0.01, retry_jitter=False)
    def flaky() -> None:
        raise ConnectionError("down")

    @app.task(name="steps", queue="reports")
    def steps(n: int, pause: float = 0.05) -> dict[str, int]:
        for i in range(1, n + 1):
            conveyor.progress(100 * i / n, f"step {i} of {n}", step=i)
            time.sleep(pause)
        return {"steps": n}

    @app.task(name="stamped")
    def stamped(n: int, pause: float) -> None:
        for i in range(1, n + 1):
            conveyor.progress(100 * i / n, sent=time.time())
            time.sleep(pause)

    @app.task(name="hold")
    def hold(seconds: float) -> str:
        ctx = conveyor.current_job()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ctx is not None and ctx.cancelled:
                return "stopped"
            time.sleep(0.02)
        return "held"

    @app.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return {"args": list(args), "kwargs": kwargs}

    @app.periodic(every=3600, name="hourly")
    def hourly() -> str:
        return "tick"

    return app


@pytest.fixture(params=["sqlite", "redis"])
def web_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return url_for(request.param, request, tmp_path_factory)


@pytest.fixture
def app(web_url: str, namespace: str) -> Iterator[App]:
    a = make_app(web_url, namespace)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def sqlite_app(tmp_path: Any, namespace: str) -> Iterator[App]:
    a = make_app(f"sqlite:///{tmp_path}/jobs.db", namespace)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(app.asgi()) as c:
        yield c


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def wait_state(app: App, job_id: str, *states: str, timeout: float = 20.0) -> None:
    wait_for(lambda: app.job(job_id).state.value in states, timeout)


@dataclass
class Server:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **kwargs)


def serve(web: Starlette) -> Iterator[Server]:
    port = free_port()
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20)
    try:
        yield Server(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(10)


@pytest.fixture
def server(app: App) -> Iterator[Server]:
    yield from serve(build(app, heartbeat_seconds=0.5))


@pytest.fixture
def worker(app: App) -> Iterator[Any]:
    w = app.worker(concurrency=4, lease_seconds=5.0, shutdown_timeout=5.0)
    w.start()
    try:
        yield w
    finally:
        w.stop(timeout=10)
