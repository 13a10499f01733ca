"""The app: settings, backends by URL, eager mode, isolation between apps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import conveyor
from conveyor.config import Settings


def test_importing_conveyor_imports_no_driver() -> None:
    code = (
        "import sys, conveyor; "
        "bad = [m for m in ('redis', 'psycopg', 'starlette', 'uvicorn') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_worker_on_a_store_loads_neither_the_memory_backend_nor_the_executor(
    tmp_path: Path,
) -> None:
    # each is loaded when used (an eager app, app.executor()): a worker's RSS (issue 15)
    code = (
        "import sys, conveyor; "
        f"app = conveyor.App('sqlite:///{tmp_path / 'w.db'}'); "
        "app.backend; app.worker(schedule=False); "
        "print([m for m in ('conveyor.backends.memory', 'conveyor.executor.durable') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_come_from_keywords_then_environment_then_defaults() -> None:
    env = {"CONVEYOR_URL": "redis://h:1/0", "CONVEYOR_TOKEN": "t"}
    assert Settings.load(environ={}).url == "sqlite:///conveyor.db"
    assert Settings.load(environ=env).url == "redis://h:1/0"
    assert Settings.load(environ=env).token == "t"
    assert Settings.load(url="memory://", environ=env).url == "memory://"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "nonsense"}, "is not a URL"),
        ({"url": "memory://", "namespace": "has space"}, "namespace"),
        ({"url": "memory://", "serializer": "yaml"}, "serializer 'yaml' is unknown"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=message):
        conveyor.App(**kwargs)  # type: ignore[arg-type]


def test_an_unknown_scheme_names_the_known_ones() -> None:
    app = conveyor.App("ftp://x")
    with pytest.raises(conveyor.ConfigurationError, match="unknown backend URL scheme 'ftp'"):
        _ = app.backend


def test_eager_mode_runs_delay_inline_and_returns_a_finished_job() -> None:
    app = conveyor.App("memory://", eager=True)

    @app.task(retries=2, retry_delay=100)
    def flaky() -> int:
        ctx = conveyor.current_job()
        assert ctx is not None
        if ctx.attempt < 2:
            raise ConnectionError("once")
        return ctx.attempt

    @app.task
    def boom() -> None:
        raise ValueError("no")

    job = flaky.delay()
    assert job.state is conveyor.State.SUCCEEDED
    assert job.result() == 2
    with pytest.raises(conveyor.JobFailed, match="ValueError: no"):
        boom.delay().result()


def test_two_apps_with_different_namespaces_share_a_file_without_seeing_each_other(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    shop, blog = conveyor.App(url, namespace="shop"), conveyor.App(url, namespace="blog")
    try:
        shop.submit("t", (), {}, conveyor.task.CallOptions())
        assert len(shop.backend.list_jobs()) == 1
        assert blog.backend.list_jobs() == []
    finally:
        shop.close()
        blog.close()


def test_an_unknown_job_id_raises_job_not_found() -> None:
    app = conveyor.App("memory://")
    with pytest.raises(conveyor.JobNotFound, match="nope"):
        app.job("nope").info()
    with pytest.raises(conveyor.JobNotFound):
        app.job("nope").cancel()


def test_enqueueing_to_a_queue_no_live_worker_serves_warns_once_per_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = conveyor.App("memory://")

    @app.task(queue="reprots")
    def build() -> None: ...

    with caplog.at_level("WARNING", logger="conveyor"):
        build.delay()
        build.delay()
    warned = [r.getMessage() for r in caplog.records if r.name == "conveyor.app"]
    assert len(warned) == 1 and "no live worker serves queue 'reprots'" in warned[0]
    caplog.clear()
    with app.worker(queues=["reports"], schedule=False), caplog.at_level("WARNING"):
        build.apply_async(queue="reports")
    assert not [r for r in caplog.records if r.name == "conveyor.app"]
