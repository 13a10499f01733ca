"""The worker's log: one line per finished attempt at INFO (task, job id, outcome, duration,
attempt; the error on failure, its traceback when the job failed for good or at DEBUG), one
per retry scheduled, and the same facts as JSON fields for log collectors."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conveyor
from conveyor.job import State
from conveyor.worker.joblog import JsonFormatter

JOBS = "conveyor.worker.jobs"


@pytest.fixture
def app() -> conveyor.App:
    return conveyor.App("memory://")


def job_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == JOBS]


def test_each_finished_attempt_is_one_line_at_info(
    app: conveyor.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="shop.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="shop.boom")
    def boom() -> None:
        raise ValueError("no such price")

    caplog.set_level(logging.INFO, logger="conveyor")
    with app.worker(concurrency=1, schedule=False):
        ok = add.delay(2, 3)
        assert ok.result(timeout=30) == 5
        bad = boom.delay()
        assert app.wait_final(bad.id, 30) is not None
        unknown = app.submit("shop.gone", (), {}, conveyor.task.CallOptions())
        assert app.wait_final(unknown.id, 30) is not None
    lines = {r.job["job_id"]: r for r in job_lines(caplog)}  # type: ignore[attr-defined]
    assert lines[ok.id].levelno == logging.INFO
    assert lines[ok.id].getMessage().startswith(f"shop.add[{ok.id}] succeeded in ")
    assert lines[ok.id].getMessage().endswith("(attempt 1)")
    failed = lines[bad.id].getMessage()
    assert failed.startswith(f"shop.boom[{bad.id}] failed in ")
    assert "(attempt 1): ValueError: no such price\nTraceback" in failed  # failed for good
    assert lines[bad.id].levelno == logging.ERROR
    assert "TaskNotFound: no task registered under the name 'shop.gone'" in (
        lines[unknown.id].getMessage()
    )
    facts = lines[bad.id].job  # type: ignore[attr-defined]
    assert facts["outcome"] == "failed" and facts["attempt"] == 1 and facts["duration_s"] >= 0
    assert (facts["task"], facts["error_type"]) == ("shop.boom", "ValueError")


def test_a_retried_attempt_and_the_retry_scheduled_are_a_line_each(
    app: conveyor.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="shop.flaky", retries=1, retry_delay=0.05, retry_jitter=False)
    def flaky() -> None:
        raise ConnectionError("rates API did not answer")

    caplog.set_level(logging.INFO, logger="conveyor")
    with app.worker(concurrency=1, schedule=False):
        job = flaky.delay()
        record = app.wait_final(job.id, 30)
    assert record is not None and record.state is State.FAILED
    said = [r.getMessage() for r in job_lines(caplog)]
    assert said[0].startswith(f"shop.flaky[{job.id}] failed in ")
    assert said[0].endswith("(attempt 1): ConnectionError: rates API did not answer")  # no tb
    assert re.fullmatch(
        rf"shop\.flaky\[{job.id}\] retry scheduled in \d+\.\d\d ms \(attempt 2 next\)", said[1]
    )
    assert "(attempt 2): ConnectionError" in said[2] and "Traceback" in said[2]
    assert len(said) == 3


def test_at_debug_every_failed_attempt_carries_its_traceback(
    app: conveyor.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="shop.flaky", retries=1, retry_delay=0.01, retry_jitter=False)
    def flaky() -> None:
        raise ConnectionError("down")

    caplog.set_level(logging.DEBUG, logger="conveyor")
    with app.worker(concurrency=1, schedule=False):
        app.wait_final(flaky.delay().id, 30)
    first = job_lines(caplog)[0].getMessage()
    assert "(attempt 1)" in first and "Traceback (most recent call last)" in first


def test_with_info_off_nothing_is_logged(
    app: conveyor.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="shop.add")
    def add(x: int, y: int) -> int:
        return x + y

    caplog.set_level(logging.WARNING, logger="conveyor")
    with app.worker(concurrency=1, schedule=False):
        add.delay(1, 2).result(timeout=30)
    assert job_lines(caplog) == []


def test_the_json_format_puts_the_facts_in_fields_of_their_own() -> None:
    record = logging.LogRecord(JOBS, logging.ERROR, __file__, 1, "a[1] failed: %s", ("x",), None)
    record.job = {"task": "a", "job_id": "1", "outcome": "failed", "traceback": "Traceback ..."}
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["logger"] == JOBS and line["task"] == "a"
    assert line["message"] == "a[1] failed: x" and line["traceback"] == "Traceback ..."
    assert line["time"].endswith("Z")


@pytest.mark.slow
def test_conveyor_worker_logs_json_lines_with_log_format_json(tmp_path: Path) -> None:
    (tmp_path / "logtasks.py").write_text(
        textwrap.dedent(
            f"""
            import conveyor
            app = conveyor.App("sqlite:///{tmp_path}/jobs.db")

            @app.task
            def boom(row):
                raise ValueError(f"bad row {{row}}")
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("CONVEYOR_URL", None)
    base = [sys.executable, "-m", "conveyor", "-A", "logtasks:app"]
    enqueue = subprocess.run(
        [*base, "enqueue", "logtasks.boom", "7"], env=env, cwd=tmp_path, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    job_id = enqueue.stdout.strip()
    worker = subprocess.Popen(
        [*base, "worker", "--no-schedule", "--log-format", "json", "--log-level", "info"],
        env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stderr is not None
        for raw in worker.stderr:
            line = json.loads(raw)  # every line is JSON
            if line.get("job_id") == job_id:
                break
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
    assert worker.returncode == 0
    assert (line["outcome"], line["error_type"], line["error_message"]) == (
        "failed", "ValueError", "bad row 7",
    )  # fmt: skip
    assert line["task"] == "logtasks.boom" and line["attempt"] == 1
    assert "Traceback" in line["traceback"] and "\n" not in line["message"]
