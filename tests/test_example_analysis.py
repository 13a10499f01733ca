"""examples/analysis.py with real worker processes (``conveyor -A examples.analysis:app
worker``): the aggregate lands in the app's own table with the failed analyzer named, and a
running analysis is cancelled, its running analyzer included."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from conveyor.job import State
from tests.worker.procs import ROOT, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    url = f"sqlite:///{tmp_path}/jobs.db"
    monkeypatch.setenv("CONVEYOR_URL", url)
    monkeypatch.setenv("ANALYSIS_DB", str(tmp_path / "analysis.db"))
    module = importlib.reload(importlib.import_module("examples.analysis"))  # reads the env
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor", "-A", "examples.analysis:app", "worker", "-c", "4"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        yield module
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
        module.app.close()


def test_the_aggregate_is_written_with_the_failed_analyzer_named(analysis: ModuleType) -> None:
    ok = analysis.start_analysis("a good text with great words, good results")
    partial = analysis.start_analysis("a good text during an outage")
    wait_for(lambda: analysis.get_analysis(ok)["status"] != "running", 60, "the first")
    wait_for(lambda: analysis.get_analysis(partial)["status"] != "running", 60, "the second")
    done = analysis.get_analysis(ok)
    assert done["status"] == "done"
    assert done["report"]["sentiment"] == "positive" and done["report"]["words"] == 8
    assert done["report"]["failed"] == {}
    half = analysis.get_analysis(partial)
    assert half["status"] == "partial"
    assert "ConnectionError" in half["report"]["failed"]["analysis.sentiment"]
    assert half["report"]["words"] == 6  # the others' parts are all there
    workflow = analysis.app.workflow(half["workflow"])
    # The aggregate writes the app's row before its own outcome is written: wait for that.
    wait_for(lambda: workflow.state is not State.RUNNING, 60, "the aggregate to finish")
    assert workflow.state is State.SUCCEEDED  # the aggregate ran, with the failure in its slot
    assert [j.task for j in workflow.jobs][-1] == "analysis.aggregate"


def test_a_running_analysis_is_cancelled_with_its_running_analyzer(analysis: ModuleType) -> None:
    analysis_id = analysis.start_analysis("a slow text to summarise")
    workflow = analysis.app.workflow(analysis.get_analysis(analysis_id)["workflow"])
    summary = workflow.jobs[3]
    wait_for(lambda: summary.state is State.RUNNING, 60, "the summary to run")
    analysis.cancel_analysis(analysis_id)
    wait_for(lambda: workflow.state is not State.RUNNING, 60, "every job to be final")
    assert summary.state is State.CANCELLED
    assert workflow.jobs[-1].state is State.CANCELLED  # the aggregate never ran
    assert workflow.state is State.CANCELLED
    assert analysis.get_analysis(analysis_id)["status"] == "cancelled"
