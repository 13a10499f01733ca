"""``conveyor dashboard`` and ``conveyor run``: the refusals, and a real server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conveyor.cli import cli
from tests.servers import free_port


def test_dashboard_refuses_a_public_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "without a token" in result.output
    assert "Traceback" not in result.output


def test_run_needs_the_apps_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 2 and "-A" in result.output


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not come up")


@pytest.mark.slow
def test_run_serves_the_dashboard_and_runs_jobs(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        "import conveyor\n"
        f"app = conveyor.App('sqlite:///{tmp_path}/jobs.db')\n"
        "@app.task(name='add')\n"
        "def add(x, y):\n    return x + y\n"
    )
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("CONVEYOR_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "-A", "tasks:app", "run", "--port", str(port),
         "--token", "t0k", "--loglevel", "warning"],
        cwd=tmp_path, env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/healthz", proc)
        auth = {"Authorization": "Bearer t0k"}
        job = httpx.post(f"{base}/api/jobs", json={"task": "add", "args": [2, 3]}, headers=auth)
        assert job.status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = httpx.get(f"{base}/api/jobs/{job.json()['id']}", headers=auth).json()
            if body["state"] == "succeeded":
                break
            time.sleep(0.1)
        assert body["result"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
