"""examples/tools.py as its README runs it (the API and a worker, real processes): tools and
clean-ups on their queues, live updates over SSE until the job is final, cancel, metrics."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import conveyor
from tests.examples.procs import Process, http
from tests.servers import free_port
from tests.worker.procs import wait_for

pytestmark = pytest.mark.slow


def sse_states(url: str) -> list[str]:
    """The states of a job's event stream, read until the server ends it (job final)."""
    states = []
    with urllib.request.urlopen(url, timeout=60) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data:"):
                states.append(json.loads(line[5:])["state"])
    return states


@pytest.mark.timeout(180)
def test_the_tool_runner(tmp_path: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path}/tools.db"
    base = f"http://127.0.0.1:{port}"
    with Process("-m", "examples.tools", env={"CONVEYOR_URL": url, "PORT": str(port)}):
        wait_for(lambda: http("GET", f"{base}/jobs/healthz")[0] == 200, timeout=60, what="API")
        status, body = http(
            "POST", f"{base}/api/run", {"tool": "word_count", "params": {"text": "a b c"}}
        )
        assert status == 202
        states = sse_states(base + body["events"])
        assert states[-1] == "succeeded"
        job = http("GET", f"{base}/jobs/api/jobs/{body['job_id']}")[1]
        assert (job["queue"], job["result"]) == ("tools", {"words": 3, "characters": 5})

        cleanup = http("POST", f"{base}/api/run", {"tool": "cleanup"})[1]["job_id"]
        assert http("GET", f"{base}/jobs/api/jobs/{cleanup}")[1]["queue"] == "maintenance"

        slow = http("POST", f"{base}/api/run", {"tool": "crawl", "params": {"pages": 60}})[1]
        wait_for(
            lambda: http("GET", f"{base}/jobs/api/jobs/{slow['job_id']}")[1]["state"] == "running",
            what="the crawl running",
        )
        assert http("POST", f"{base}/jobs/api/jobs/{slow['job_id']}/cancel")[0] == 200
        assert sse_states(base + slow["events"])[-1] == "cancelled"

        assert http("POST", f"{base}/api/run", {"tool": "rm -rf"})[0] == 400
        with urllib.request.urlopen(f"{base}/jobs/metrics", timeout=10) as metrics:
            assert "conveyor_" in metrics.read().decode()
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert "EventSource" in page.read().decode()  # the browser follows the SSE
    app = conveyor.App(url)
    try:
        assert app.job(cleanup).result(timeout=30) == 0
    finally:
        app.close()
