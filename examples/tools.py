"""A tool runner on FastAPI: ``POST /api/run`` routes tools to the ``tools`` queue and
clean-ups to ``maintenance``, each with time limits; periodic clean-up and statistics; cancel;
live job updates to the browser over server-sent events; Prometheus metrics. The last three
come from conveyor's own HTTP API, mounted at /jobs.

    python -m examples.tools        # the API on 127.0.0.1:8000 ($PORT) and a worker; open /

or as a deployment runs it:

    uvicorn examples.tools:api --port 8000
    conveyor -A examples.tools:app worker -Q tools -c 4
    conveyor -A examples.tools:app worker -Q maintenance -c 1

The store is CONVEYOR_URL, else ./tools.db.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

import conveyor

app = conveyor.App(os.environ.get("CONVEYOR_URL") or "sqlite:///tools.db")


def word_count(text: str = "") -> dict[str, int]:
    return {"words": len(text.split()), "characters": len(text)}


def digest(text: str = "", rounds: int = 1) -> dict[str, str]:
    value = text.encode()
    for i in range(rounds):
        value = hashlib.sha256(value).digest()
        if i % 1000 == 0:
            conveyor.progress(100 * i / rounds, f"round {i} of {rounds}")
    return {"sha256": value.hex()}


def crawl(pages: int = 3, seconds: float = 0.5) -> dict[str, int]:
    """A slow tool: a page at a time, reporting each; cancel it from the page."""
    for page in range(1, pages + 1):
        time.sleep(seconds)
        conveyor.progress(100 * page / pages, f"page {page} of {pages}", page=page)
    return {"pages": pages}


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "word_count": word_count,
    "digest": digest,
    "crawl": crawl,
}


@app.task(name="tools.run", queue="tools", soft_timeout=50, timeout=60)
def run_tool(tool: str, params: dict[str, Any]) -> dict[str, Any]:
    return TOOLS[tool](**params)


@app.task(name="tools.cleanup", queue="maintenance", timeout=120)
def cleanup(older_than_seconds: float = 3600) -> int:
    """Purge the waiting jobs of tools nobody collected (a stand-in for real clean-up)."""
    return 0 if older_than_seconds > 0 else app.purge("tools")


@app.periodic(every=300, args=(3600,), name="tools.periodic_cleanup", queue="maintenance")
def periodic_cleanup(older_than_seconds: float) -> int:
    return cleanup(older_than_seconds)


@app.periodic(every=60, name="tools.statistics", queue="maintenance")
def statistics() -> dict[str, dict[str, int]]:
    """Jobs per queue and state, kept as this job's result (the dashboard shows it)."""
    return {queue: {str(s): n for s, n in counts.items()} for queue, counts in app.queues().items()}


class Run(BaseModel):
    tool: str
    params: dict[str, Any] = {}


api = FastAPI(title="tools")
api.mount("/jobs", app.asgi())  # the JSON API, SSE (/jobs/api/jobs/{id}/events), /jobs/metrics


@api.post("/api/run", status_code=202)
async def run(body: Run) -> dict[str, str]:
    if body.tool == "cleanup":
        job = await cleanup.adelay(**body.params)  # the maintenance queue
    elif body.tool in TOOLS:
        job = await run_tool.adelay(body.tool, body.params)  # the tools queue
    else:
        raise HTTPException(400, f"unknown tool {body.tool!r}; known: cleanup, {', '.join(TOOLS)}")
    return {"job_id": job.id, "events": f"/jobs/api/jobs/{job.id}/events"}


PAGE = """<!doctype html><meta charset="utf-8"><title>tools</title>
<form id="f"><select name="tool"><option>crawl<option>word_count<option>digest<option>cleanup
</select><button>run</button></form><pre id="log"></pre>
<script>
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const tool = new FormData(e.target).get("tool");
  const r = await fetch("/api/run", {method: "POST", headers: {"content-type": "application/json"},
                                     body: JSON.stringify({tool, params: {}})});
  const {job_id, events} = await r.json();
  const log = document.getElementById("log");
  const source = new EventSource(events);
  source.addEventListener("job", (m) => {
    const e = JSON.parse(m.data);
    log.textContent += `${job_id} ${e.state} ${e.progress ? e.progress.percent + "%" : ""}\\n`;
  });
  source.onerror = () => source.close();
};
</script>"""


@api.get("/", response_class=HTMLResponse)
def page() -> str:
    return PAGE


#: the worker the one-command run starts beside the API
WORKER = ["-A", "examples.tools:app", "worker", "-Q", "tools,maintenance", "-c", "4"]


def main() -> int:
    from examples.serving import serve_with_worker

    return serve_with_worker(api, WORKER)


if __name__ == "__main__":
    sys.exit(main())
