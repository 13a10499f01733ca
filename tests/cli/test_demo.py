"""``conveyor demo`` (what ``make demo`` runs) finishes by itself, without a terminal, and
leaves its jobs in conveyor-demo.db for the commands it suggests next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.cli.conftest import run

pytestmark = pytest.mark.slow


def test_demo_runs_every_job_to_its_end_and_leaves_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conveyor-demo.db").write_text("a previous demo's file, replaced")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    # a user's shell, venv not activated, on an 80-column terminal
    bin_dir = os.path.dirname(sys.executable)
    path = [d for d in env.get("PATH", "").split(os.pathsep) if d != bin_dir]
    env.update(PATH=os.pathsep.join(path), COLUMNS="80")
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for line in done.stdout.splitlines():
        if "What happened" in line:
            break
        assert cell_len(line) <= 80, line
    # (the hints after it are commands, left whole for copying: the terminal wraps them)
    summary = done.stdout.split("What happened", 1)[1].split("The jobs are still", 1)[0]
    assert "demo.import_prices" in summary and "ValueError" in summary
    assert max(cell_len(line) for line in summary.splitlines()) <= 80, summary
    # the hints at the end run as typed, from this shell
    hints = [line.strip() for line in done.stdout.splitlines() if line.startswith("  CONVEYOR_URL")]
    assert hints[0].startswith("CONVEYOR_URL=sqlite:///conveyor-demo.db ") and "jobs" in hints[0]
    for hint in hints:
        ran = subprocess.run(
            hint, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert ran.returncode == 0, (hint, ran.stderr)
        assert "demo." in ran.stdout

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVEYOR_URL", "sqlite:///conveyor-demo.db")
    listed = json.loads(run("jobs", "--json").stdout)
    jobs = {job["task"] + json.dumps(job["args"]): job for job in listed}
    assert {job["state"] for job in jobs.values()} == {"succeeded", "failed"}
    assert jobs['demo.fetch_rates["USD"]']["attempts"] == 3
    assert jobs['demo.fetch_rates["USD"]']["state"] == "succeeded"
    assert jobs['demo.import_prices["prices.csv"]']["error"]["type"] == "ValueError"
    assert jobs['demo.assess["Acme Corp"]']["progress"]["data"] == {"step": 6}
    assert jobs["demo.send_reminder[42]"]["eta"] is not None
