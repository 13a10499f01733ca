"""The inspecting commands (jobs, job, cancel, retry, queues, workers, schedules, purge) on a
SQLite file, with and without -A."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time

import pytest

from conveyor.app import App
from conveyor.backends.base import WorkerInfo
from conveyor.job import State
from conveyor.task import CallOptions
from tests.cli.conftest import AppModule, assert_user_error, run


def finished_jobs(module: AppModule) -> dict[str, str]:
    """One succeeded, one failed and one queued job; returns their ids by kind."""
    app = module.app
    with app.worker(concurrency=2, schedule=False):
        ok = app.submit(module.task("add"), (2, 3), {}, CallOptions())
        bad = app.submit(module.task("boom"), ("no such price",), {}, CallOptions())
        ok.result(timeout=30)
        bad_record = app.wait_final(bad.id, 30)
        assert bad_record is not None and bad_record.state is State.FAILED
    waiting = app.submit(module.task("report"), (3,), {}, CallOptions())
    return {"ok": ok.id, "bad": bad.id, "waiting": waiting.id}


def test_jobs_lists_each_job_with_its_task_and_state(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    result = run("jobs")
    assert result.exit_code == 0, result.output
    for job_id in ids.values():
        assert job_id in result.stdout
    assert "succeeded" in result.stdout and "failed" in result.stdout
    assert app_module.task("boom") in result.stdout


def test_jobs_filters_by_state_and_prints_json_for_scripts(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    result = run("jobs", "--state", "failed", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [job["id"] for job in listed] == [ids["bad"]]
    assert listed[0]["error"]["type"] == "ValueError"


def test_jobs_filters_by_task_and_queue(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    by_queue = json.loads(run("jobs", "--queue", "reports", "--json").stdout)
    by_task = json.loads(run("jobs", "--task", app_module.task("add"), "--json").stdout)
    assert [job["id"] for job in by_queue] == [ids["waiting"]]
    assert [job["id"] for job in by_task] == [ids["ok"]]


def test_job_shows_the_error_and_traceback_of_a_failed_job(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    result = run("job", ids["bad"])
    assert result.exit_code == 0, result.output
    assert "ValueError: no such price" in result.stdout
    assert "Traceback (most recent call last)" in result.stdout
    assert '["no such price"]' in result.stdout


def test_job_json_carries_every_field_of_job_info(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    shown = json.loads(run("job", ids["ok"], "--json").stdout)
    assert shown["result"] == 5 and shown["args"] == [2, 3] and shown["state"] == "succeeded"
    for field in ("queue", "priority", "attempts", "created_at", "started_at", "finished_at"):
        assert field in shown


def test_unknown_job_ids_are_one_line_and_exit_status_2(app_module: AppModule) -> None:
    for command in ("job", "cancel", "retry"):
        assert_user_error(run(command, "no-such-id"), "no job with id 'no-such-id'")


def test_cancel_cancels_a_queued_job(app_module: AppModule, inspector: App) -> None:
    ids = finished_jobs(app_module)
    result = run("cancel", ids["waiting"])
    assert result.exit_code == 0, result.output
    assert inspector.job(ids["waiting"]).state is State.CANCELLED


def test_cancelling_a_finished_job_is_a_mistake(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    assert_user_error(run("cancel", ids["ok"]), "already succeeded")


def test_retry_sends_a_failed_job_back_to_the_queue(app_module: AppModule, inspector: App) -> None:
    ids = finished_jobs(app_module)
    result = run("retry", ids["bad"])
    assert result.exit_code == 0, result.output
    assert inspector.job(ids["bad"]).state is State.QUEUED


def test_retry_failed_queues_every_failed_job_again(app_module: AppModule, inspector: App) -> None:
    failed = []
    app = app_module.app
    with app.worker(concurrency=4, schedule=False):
        for n in range(3):
            failed.append(app.submit(app_module.task("boom"), (f"no {n}",), {}, CallOptions()))
        for job in failed:
            app.wait_final(job.id, 30)
    result = run("retry", "--failed")
    assert result.exit_code == 0, result.output
    assert "3 failed jobs queued again" in result.stdout
    assert {inspector.job(job.id).state for job in failed} == {State.QUEUED}


def test_retry_needs_a_job_id_or_failed_but_not_both(app_module: AppModule) -> None:
    assert_user_error(run("retry"), "--failed")
    assert_user_error(run("retry", "some-id", "--failed"), "--failed")


def test_retrying_a_succeeded_job_is_a_mistake(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    assert_user_error(run("retry", ids["ok"]), "only failed, cancelled or expired")


def test_queues_counts_the_jobs_of_each_queue_by_state(app_module: AppModule) -> None:
    finished_jobs(app_module)
    table = run("queues")
    assert table.exit_code == 0, table.output
    assert "default" in table.stdout and "reports" in table.stdout
    counts = json.loads(run("queues", "--json").stdout)
    assert counts == {"default": {"succeeded": 1, "failed": 1}, "reports": {"queued": 1}}


def test_workers_lists_registered_workers_and_marks_stale_ones(inspector: App) -> None:
    now = time.time()
    for worker_id, seen in (("fresh-worker", now), ("gone-worker", now - 600)):
        inspector.backend.register_worker(
            WorkerInfo(worker_id, "host-a", 42, ["default"], 8, "thread", now - 900, seen)
        )
    result = run("workers")
    assert result.exit_code == 0, result.output
    assert "fresh-worker" in result.stdout and "gone-worker" in result.stdout
    assert result.stdout.count("stale") == 1
    listed = {w["id"]: w for w in json.loads(run("workers", "--json").stdout)}
    assert listed["gone-worker"]["stale"] and not listed["fresh-worker"]["stale"]


def test_schedules_lists_the_apps_periodic_tasks(app_module: AppModule) -> None:
    result = run("-A", app_module.spec, "schedules")
    assert result.exit_code == 0, result.output
    assert app_module.task("hourly") in result.stdout
    assert "every 1h" in result.stdout and "never" in result.stdout
    rows = json.loads(run("-A", app_module.spec, "schedules", "--json").stdout)
    hourly = next(r for r in rows if r["task"] == app_module.task("hourly"))
    assert hourly["next_due"] > time.time() and hourly["last_due"] is None


def test_purge_deletes_the_waiting_jobs_of_a_queue(app_module: AppModule, inspector: App) -> None:
    ids = finished_jobs(app_module)
    result = run("purge", "reports", "--yes")
    assert result.exit_code == 0, result.output
    assert "purged 1 job from queue 'reports'" in result.stdout
    assert inspector.get_record(ids["waiting"]) is None
    assert inspector.get_record(ids["ok"]) is not None


def test_inspecting_works_without_an_app_on_the_embedded_default(
    inspector: App, app_module: AppModule
) -> None:
    ids = finished_jobs(app_module)
    result = run("jobs", "--json")  # no -A: conveyor.App() on CONVEYOR_URL
    assert {job["id"] for job in json.loads(result.stdout)} == set(ids.values())


def test_version_prints_the_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert "conveyor" in result.stdout


def test_purge_without_a_terminal_or_yes_purges_nothing(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    assert_user_error(run("purge", "reports"), "would delete the 1 job", "--yes")
    assert app_module.app.job(ids["waiting"]).state is State.QUEUED


@pytest.mark.slow
def test_purge_asks_on_a_terminal_and_purges_only_on_yes(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    said, code = on_a_terminal(app_module, ["purge", "reports"], answer="n")
    assert code == 0 and "delete the 1 job waiting in queue 'reports'" in said, said
    assert "nothing purged" in said
    assert app_module.app.job(ids["waiting"]).state is State.QUEUED
    said, code = on_a_terminal(app_module, ["purge", "reports"], answer="y")
    assert code == 0 and "purged 1 job from queue 'reports'" in said, said
    assert app_module.app.get_record(ids["waiting"]) is None


def on_a_terminal(module: AppModule, words: list[str], *, answer: str) -> tuple[str, int]:
    """``conveyor WORDS`` in a process whose terminal is a pseudo-terminal; types ``answer``
    once it asks. Returns what it printed and its exit status."""
    leader, follower = pty.openpty()
    env = dict(os.environ, CONVEYOR_URL=module.url, PYTHONPATH=str(module.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", *words],
        stdin=follower, stdout=follower, stderr=follower, cwd=module.path, env=env,
    )  # fmt: skip
    os.close(follower)
    said = b""
    try:
        while b"[y/N]" not in said:
            said += os.read(leader, 4096)
        os.write(leader, f"{answer}\n".encode())
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the process ended and closed the terminal
                break
            if not chunk:
                break
            said += chunk
    finally:
        code = proc.wait(60)
        os.close(leader)
    return said.decode(errors="replace"), code


def test_job_keeps_showing_the_worker_that_ran_a_finished_job(app_module: AppModule) -> None:
    ids = finished_jobs(app_module)
    for kind in ("ok", "bad"):
        shown = json.loads(run("job", ids[kind], "--json").stdout)
        assert shown["worker"] and shown["worker"].count(":") == 2, shown  # host:pid:random
        assert f"ran on    {shown['worker']}" in run("job", ids[kind]).stdout
