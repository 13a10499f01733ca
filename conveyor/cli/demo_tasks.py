"""The tasks ``conveyor demo`` runs: the kinds of work web applications hand to the background.

They live in an importable module so that worker processes find them too:
``conveyor -A conveyor.cli.demo_tasks:app worker`` serves the demo's database.
"""

from __future__ import annotations

import asyncio
import time

import conveyor
from conveyor.app import App

DEMO_FILE = "conveyor-demo.db"
DEMO_URL = f"sqlite:///{DEMO_FILE}"

ASSESSMENT_STEPS = (
    "Fetching filings",
    "Parsing statements",
    "Scoring risk factors",
    "Executing agents",
    "Reviewing findings",
    "Writing the report",
)


def _pause(seconds: float) -> None:
    """Sleep in short steps: the worker stops a cancelled job between two of them."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.05, left))


def assess(company: str) -> dict[str, object]:
    """An analysis pipeline that reports each step it reaches."""
    for step, message in enumerate(ASSESSMENT_STEPS, 1):
        conveyor.progress(100 * (step - 1) / len(ASSESSMENT_STEPS), message, step=step)
        _pause(0.6)
    conveyor.progress(100, "Report ready", step=len(ASSESSMENT_STEPS))
    score = 60 + sum(map(ord, company)) % 40
    grade = "A" if score >= 85 else "B" if score >= 70 else "C"
    return {"company": company, "score": score, "grade": grade}


def fetch_rates(base: str) -> dict[str, object]:
    """A flaky upstream call: it times out twice, then answers on the third attempt."""
    job = conveyor.current_job()
    attempt = job.attempt if job is not None else 3
    _pause(0.2)
    if attempt < 3:
        raise ConnectionError(f"rates API did not answer (attempt {attempt})")
    return {"base": base, "EUR": 0.92, "GBP": 0.79, "JPY": 151.4}


def send_reminder(user_id: int) -> str:
    """Enqueued with a countdown: it waits its turn as ``scheduled``."""
    _pause(0.2)
    return f"reminder e-mailed to user {user_id}"


def import_prices(path: str) -> int:
    """Bad data: fails for good, without retries."""
    _pause(0.4)
    raise ValueError(f"{path}, row 42: price 'n/a' is not a number")


async def summarize(document_id: int) -> dict[str, object]:
    """An ``async def`` task, as when calling a model's API with an async client."""
    for part in range(1, 6):
        conveyor.progress(20 * (part - 1), f"Summarising part {part} of 5", part=part)
        await asyncio.sleep(0.4)
    conveyor.progress(100, "Summary ready")
    return {"document": document_id, "words": 182}


def add(x: int, y: int) -> int:
    return x + y


def resize_image(name: str, width: int) -> str:
    _pause(0.15)
    return f"{name} resized to {width}px"


def register(app: App) -> App:
    """Register the demo's tasks with ``app``, under names that do not depend on where this
    module is imported from."""
    app.task(name="demo.assess", queue="analysis")(assess)
    app.task(
        name="demo.fetch_rates",
        retries=3,
        retry_on=(ConnectionError,),
        retry_delay=0.3,
        retry_jitter=False,
    )(fetch_rates)
    app.task(name="demo.send_reminder")(send_reminder)
    app.task(name="demo.import_prices", retries=0)(import_prices)
    app.task(name="demo.summarize", queue="analysis")(summarize)
    app.task(name="demo.add")(add)
    app.task(name="demo.resize_image", priority=10)(resize_image)
    return app


app = register(App(DEMO_URL))
