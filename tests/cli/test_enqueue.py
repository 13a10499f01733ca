"""``conveyor enqueue``: by name with JSON arguments; ``--wait`` follows the job to its end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from conveyor.app import App
from conveyor.job import State
from tests.cli.conftest import AppModule, assert_user_error, run


@pytest.fixture
def worker(app_module: AppModule) -> Iterator[None]:
    """An embedded worker on the app module's app, as ``with app.worker():`` runs one."""
    with app_module.app.worker(concurrency=2, schedule=False):
        yield


def test_enqueue_prints_the_job_id_and_stores_the_call(
    app_module: AppModule, inspector: App
) -> None:
    result = run(
        "-A", app_module.spec, "enqueue", app_module.task("add"), "2", "3",
        "--queue", "fast", "--priority", "7", "--countdown", "60",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = inspector.job(result.stdout.strip()).info()
    assert (info.args, info.queue, info.priority) == ((2, 3), "fast", 7)
    assert info.state is State.SCHEDULED


def test_enqueue_takes_keyword_arguments_as_a_json_object(
    app_module: AppModule, inspector: App
) -> None:
    result = run(
        "-A", app_module.spec, "enqueue", app_module.task("add"), "--kwargs", '{"x": 1, "y": 2}'
    )
    assert result.exit_code == 0, result.output
    assert inspector.job(result.stdout.strip()).info().kwargs == {"x": 1, "y": 2}


def test_enqueue_with_the_same_key_returns_the_same_job(app_module: AppModule) -> None:
    args = ("-A", app_module.spec, "enqueue", app_module.task("add"), "1", "1", "--key", "k-1")
    first, second = run(*args), run(*args)
    assert first.stdout == second.stdout
    assert first.stdout.strip()


def test_enqueue_wait_prints_the_result_and_exits_0(app_module: AppModule, worker: None) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("report"), "4", "--wait")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"steps": 4}
    assert "succeeded" in result.stderr  # the progress bar's last state


def test_enqueue_wait_exits_1_when_the_job_fails(app_module: AppModule, worker: None) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("boom"), '"bad row 7"', "--wait")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "ValueError: bad row 7" in result.stderr
    assert "Traceback" not in result.output


def test_enqueue_wait_exits_1_when_the_timeout_passes(app_module: AppModule) -> None:
    result = run(
        "-A", app_module.spec, "enqueue", app_module.task("add"), "1", "2",
        "--wait", "--timeout", "0.2",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "still queued after 0.2 s" in result.stderr


def test_a_bad_json_argument_is_one_line_and_exit_2(app_module: AppModule) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("boom"), "plain words")
    assert_user_error(result, "argument 1 is not JSON")


def test_an_unknown_task_is_one_line_naming_the_known_ones(app_module: AppModule) -> None:
    result = run("-A", app_module.spec, "enqueue", "no.such.task")
    assert_user_error(result, "no task registered under the name 'no.such.task'", "add")


def test_arguments_that_do_not_fit_the_task_fail_at_the_call_site(app_module: AppModule) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("add"), "1", "2", "3")
    assert_user_error(result, "(x, y)", "too many positional arguments")


def test_kwargs_must_be_a_json_object(app_module: AppModule) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("add"), "--kwargs", "[1, 2]")
    assert_user_error(result, "--kwargs must be a JSON object")


def test_enqueue_needs_the_app(app_module: AppModule) -> None:
    assert_user_error(run("enqueue", "tasks.add", "1", "2"), "-A module:attribute")


def test_an_out_of_range_priority_is_a_usage_error(app_module: AppModule) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("add"), "--priority", "500")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_enqueueing_to_a_queue_no_worker_serves_warns_once(
    app_module: AppModule, inspector: App
) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("add"), "1", "2", "-Q", "x")
    assert result.exit_code == 2  # -Q is the worker's; enqueue says --queue
    typo = run(
        "-A", app_module.spec, "enqueue", app_module.task("add"), "1", "2", "--queue", "reprots"
    )
    assert typo.exit_code == 0, typo.output
    assert typo.stdout.strip()  # the job id: the job is stored all the same
    warnings = [line for line in typo.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, typo.stderr
    assert "no live worker serves queue 'reprots'" in warnings[0]
    assert "worker -Q reprots" in warnings[0]


def test_no_warning_when_a_live_worker_serves_the_queue(
    app_module: AppModule, worker: None
) -> None:
    result = run("-A", app_module.spec, "enqueue", app_module.task("add"), "1", "2")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


@pytest.mark.slow
def test_ctrl_c_during_wait_exits_130_and_says_the_job_keeps_running(
    app_module: AppModule, inspector: App
) -> None:
    env = dict(os.environ, PYTHONPATH=str(app_module.path), CONVEYOR_URL=app_module.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "-A", app_module.spec, "enqueue",
         app_module.task("report"), "5", "--wait"],
        cwd=app_module.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not inspector.backend.list_jobs() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # watching now
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    (job,) = inspector.backend.list_jobs()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Aborted" not in err and "Traceback" not in err
    assert f"job {job.id} keeps running" in err
    assert f"conveyor job {job.id}" in err
    assert inspector.job(job.id).state is State.QUEUED  # still there for a worker
