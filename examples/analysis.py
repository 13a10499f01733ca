"""Fan out an analysis and aggregate it: the worked example of docs/workflows.md.

A document gets a main record in the app's own SQLite table; four analyzers run in parallel
as a chord with ``allow_failures=True``; the callback writes the aggregate (and which
analyzers failed) back to the main record. A running analysis can be cancelled.

    conveyor -A examples.analysis:app worker -c 4         # from the repository's root
    python -m examples.analysis "some text to analyse"    # starts one, waits, prints it

The jobs live where CONVEYOR_URL says (the embedded default: ./conveyor.db); the app's own
records in ANALYSIS_DB (default ./analysis.db).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections import Counter
from typing import Any

import conveyor

app = conveyor.App()

SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id       INTEGER PRIMARY KEY,
    text     TEXT NOT NULL,
    status   TEXT NOT NULL,          -- running, done, partial, failed, cancelled
    workflow TEXT,                   -- the conveyor workflow doing it
    report   TEXT                    -- the aggregate, JSON
)
"""


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(os.environ.get("ANALYSIS_DB", "analysis.db"), timeout=30)
    conn.execute(SCHEMA)
    return conn


# -- the four analyzers: each gets the document and returns its part ------------------------


@app.task(name="analysis.words")
def words(text: str) -> dict[str, Any]:
    tokens = text.split()
    return {"words": len(tokens), "distinct": len({t.lower() for t in tokens})}


@app.task(name="analysis.keywords")
def keywords(text: str) -> dict[str, Any]:
    tokens = [t.strip(".,;:!?").lower() for t in text.split() if len(t) > 4]
    return {"keywords": [w for w, _ in Counter(tokens).most_common(3)]}


@app.task(name="analysis.sentiment", retries=2, retry_delay=0.2)
def sentiment(text: str) -> dict[str, Any]:
    """Stands in for a call to a model API, which may be down: retried, then it fails."""
    if "outage" in text:
        raise ConnectionError("the sentiment model is unavailable")
    good = sum(text.count(w) for w in ("good", "great", "fine"))
    bad = sum(text.count(w) for w in ("bad", "poor", "broken"))
    return {"sentiment": "positive" if good > bad else "negative" if bad > good else "neutral"}


@app.task(name="analysis.summary")
def summary(text: str) -> dict[str, Any]:
    """A slow analyzer (a long model call): it checks for cancellation as it goes."""
    seconds = 60.0 if "slow" in text else 0.2
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = conveyor.current_job()
        if job is not None and job.cancelled:
            raise conveyor.JobCancelled(job.id)
        time.sleep(0.05)
    return {"summary": text[:40]}


ANALYZERS = (words, keywords, sentiment, summary)


# -- the aggregate: written to the main record ----------------------------------------------


@app.task(name="analysis.aggregate")
def aggregate(parts: list[Any], analysis_id: int) -> str:
    """Gets one slot per analyzer, in order: its result, or a ``conveyor.Failure``."""
    report: dict[str, Any] = {"failed": {}}
    for analyzer, part in zip(ANALYZERS, parts, strict=True):
        if isinstance(part, conveyor.Failure):
            report["failed"][analyzer.name] = f"{part.error_type}: {part.message}"
        else:
            report.update(part)
    status = "partial" if report["failed"] else "done"
    with db() as conn:
        conn.execute(
            "UPDATE analyses SET status = ?, report = ? WHERE id = ? AND status = 'running'",
            (status, json.dumps(report), analysis_id),
        )
    return status


# -- what the web app calls -----------------------------------------------------------------


def start_analysis(text: str) -> int:
    """Create the main record and enqueue its workflow; returns the record's id."""
    with db() as conn:
        analysis_id = conn.execute(
            "INSERT INTO analyses (text, status) VALUES (?, 'running')", (text,)
        ).lastrowid
    assert analysis_id is not None
    members = [analyzer.s(text) for analyzer in ANALYZERS]
    job = conveyor.chord(members, aggregate.s(analysis_id), allow_failures=True).delay()
    assert job.workflow is not None
    with db() as conn:
        conn.execute(
            "UPDATE analyses SET workflow = ? WHERE id = ?", (job.workflow.id, analysis_id)
        )
    return analysis_id


def get_analysis(analysis_id: int) -> dict[str, Any]:
    with db() as conn:
        row = conn.execute(
            "SELECT status, workflow, report FROM analyses WHERE id = ?", (analysis_id,)
        ).fetchone()
    status, workflow, report = row
    return {"status": status, "workflow": workflow, "report": json.loads(report or "null")}


def cancel_analysis(analysis_id: int) -> None:
    """Stop every job of the analysis, the running analyzers included."""
    analysis = get_analysis(analysis_id)
    with db() as conn:
        conn.execute(
            "UPDATE analyses SET status = 'cancelled' WHERE id = ? AND status = 'running'",
            (analysis_id,),
        )
    app.workflow(analysis["workflow"]).cancel()


if __name__ == "__main__":
    text = " ".join(sys.argv[1:]) or "a good example text, with good words and great results"
    with app.worker(concurrency=4):
        analysis_id = start_analysis(text)
        while get_analysis(analysis_id)["status"] == "running":
            time.sleep(0.1)
        print(json.dumps(get_analysis(analysis_id), indent=2))
