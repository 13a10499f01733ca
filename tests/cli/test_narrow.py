"""Every command stays readable on an 80-column terminal (``COLUMNS=80``, which Rich takes
as the console's width): no line wider, no task name, state or id cut to ``…``, and the
shortened ids are accepted by ``conveyor job``."""

from __future__ import annotations

import json
import time

import pytest
from rich.cells import cell_len

from conveyor.app import App
from conveyor.backends.base import WorkerInfo
from conveyor.job import State
from conveyor.task import CallOptions
from tests.cli.conftest import AppModule, assert_user_error, run
from tests.cli.test_inspect import finished_jobs


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def assert_fits(text: str) -> None:
    assert text.strip(), "nothing printed"
    for line in text.splitlines():
        assert cell_len(line) <= 80, f"{cell_len(line)} columns: {line!r}"
    assert "…" not in text, text


def test_jobs_fit_80_columns_with_whole_task_names(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    result = run("jobs")
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)
    for short in ("add", "boom", "report"):
        assert app_module.task(short) in result.stdout  # on one line, not folded
    assert "failed" in result.stdout and "succeeded" in result.stdout and "queued" in result.stdout
    for job_id in ids.values():
        assert job_id not in result.stdout  # shortened...
        assert job_id[:8] in result.stdout  # ...to a prefix


def test_the_prefixes_jobs_shows_are_accepted_by_job_cancel_and_retry(
    app_module: AppModule,
) -> None:
    ids = finished_jobs(app_module)
    listed = run("jobs").stdout
    prefixes = {
        kind: next(w for w in listed.split() if job_id.startswith(w) and len(w) >= 8)
        for kind, job_id in ids.items()
    }
    shown = json.loads(run("job", prefixes["bad"], "--json").stdout)
    assert shown["id"] == ids["bad"]
    assert run("retry", prefixes["bad"]).exit_code == 0
    assert run("cancel", prefixes["waiting"]).stdout.startswith(f"job {ids['waiting']}:")


def test_a_prefix_of_several_jobs_asks_for_more_of_the_id(
    app_module: AppModule, inspector: App
) -> None:
    a = inspector.submit(app_module.task("add"), (1, 2), {}, CallOptions())
    b = inspector.submit(app_module.task("add"), (3, 4), {}, CallOptions())
    common = next(i for i in range(len(a.id)) if a.id[i] != b.id[i])
    assert_user_error(run("job", a.id[: max(common, 4)]), "several job ids", a.id, b.id)
    assert_user_error(run("job", "ffffffffffff"), "no job with id 'ffffffffffff'")


def test_one_job_fits_80_columns(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    ok = run("job", ids["ok"])
    assert ok.exit_code == 0, ok.output
    assert_fits(ok.stdout)


def test_workers_fit_80_columns(inspector: App) -> None:
    now = time.time()
    for n, seen in ((1, now), (2, now - 600)):
        inspector.backend.register_worker(
            WorkerInfo(
                f"build-host-{n}.internal.example.com:4242{n}:ab12cd",
                f"build-host-{n}.internal.example.com",
                42420 + n,
                ["default", "reports"],
                16,
                "process",
                now - 900,
                seen,
            )
        )
    result = run("workers")
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)
    assert "stale" in result.stdout and "process ×16" in result.stdout


def test_queues_fit_80_columns_and_mark_queues_no_worker_serves(
    app_module: AppModule, inspector: App
) -> None:
    finished_jobs(app_module)
    now = time.time()
    inspector.backend.register_worker(
        WorkerInfo("w-1", "host", 1, ["default"], 8, "thread", now, now)
    )
    result = run("queues")
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert rows["default"].split()[-1] == "1"  # one live worker
    assert rows["reports"].split()[-1] == "none"
    assert "no live worker serves reports" in result.stderr


def test_schedules_fit_80_columns(app_module: AppModule) -> None:
    result = run("-A", app_module.spec, "schedules")
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)


def test_the_wait_bar_fits_80_columns_and_shows_the_bar(app_module: AppModule) -> None:
    with app_module.app.worker(concurrency=1, schedule=False):
        result = run("-A", app_module.spec, "enqueue", app_module.task("report"), "3", "--wait")
    assert result.exit_code == 0, result.output
    bar = [line for line in result.stderr.splitlines() if "100%" in line][-1]
    assert cell_len(bar) <= 80, bar
    assert bar.count("━") >= 15, bar  # a bar, not three characters of one
    assert State.SUCCEEDED.value in bar and app_module.task("report")[:20] in bar
