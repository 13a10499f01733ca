"""examples/periodic.py as its README runs it: three scheduling instances and a heavy process
pool, real processes; every due time ran once, heavy jobs only in the heavy pool."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
from tests.examples.procs import Process

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_three_instances_run_each_due_time_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/periodic.db"
    env = {"CONVEYOR_URL": url, "PERIODIC_DIR": str(tmp_path / "reports")}
    run = Process("-m", "examples.periodic", "--seconds", "12", env=env)
    assert run.proc.wait(120) == 0, run.output()
    out = run.stop()
    assert "each due time ran once" in out

    app = conveyor.App(url)
    try:
        for name in ("periodic.health_check", "periodic.cleanup", "periodic.rebuild_index"):
            records = app.backend.list_jobs(task=name, limit=1000)
            dues = [r.meta["due"] for r in records]
            assert len(records) >= 2, out
            assert len(dues) == len(set(dues))
        light = app.backend.list_jobs(task="periodic.health_check", limit=1000)
        heavy = app.backend.list_jobs(task="periodic.rebuild_index", limit=1000)
        light_pids = {app.decode_result(r)["pid"] for r in light if r.result}
        heavy_pids = {app.decode_result(r)["pid"] for r in heavy if r.result}
        assert heavy_pids and not heavy_pids & light_pids
        assert {r.queue for r in heavy} == {"heavy"}
    finally:
        app.close()
    assert list((tmp_path / "reports").glob("index-*.txt"))
