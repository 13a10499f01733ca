"""What a worker says about each job: one line per finished attempt, one per retry scheduled.

    tasks.add[18ebe6…] succeeded in 0.21 ms (attempt 1)
    tasks.fetch[18ebe7…] failed in 310.52 ms (attempt 1): ConnectionError: timed out
    tasks.fetch[18ebe7…] retry scheduled in 1.90 s (attempt 2 next)
    tasks.report[18ebe8…] failed in 4.01 ms (attempt 1): ValueError: no such price
    Traceback (most recent call last): ...

At INFO, on the ``conveyor.worker.jobs`` logger. A traceback goes with a job that failed for
good (someone has to look at it) and, at DEBUG, with every failed attempt. Each record
carries the same facts as ``record.job`` (a dict) for ``JsonFormatter``.

Cost: with INFO off, one ``isEnabledFor`` per outcome; with it on, one logging call whose
message is formatted only if a handler emits it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from conveyor.job import Outcome, State
from conveyor.worker.execute import JobRun

log = logging.getLogger("conveyor.worker.jobs")


def attempt_ended(
    run: JobRun, outcome: Outcome, accepted: bool = True, *, now: float | None = None
) -> None:
    """Log how an attempt ended, once its outcome is written (``accepted``: the store took
    it; a refused outcome, its lease lost, is the worker's to report)."""
    if not accepted or not log.isEnabledFor(logging.INFO):
        return
    record = run.claim.record
    took = time.monotonic() - run.began_at if run.began_at else 0.0
    facts: dict[str, Any] = {
        "task": record.task,
        "job_id": record.id,
        "queue": record.queue,
        "attempt": record.attempts,
        "duration_s": round(took, 6),
    }
    error = outcome.error
    if outcome.state.is_final:
        facts["outcome"] = outcome.state.value
    else:
        facts["outcome"] = "retry"
    if error is None or outcome.state is State.SUCCEEDED:
        log.info(
            "%s[%s] %s in %s (attempt %d)",
            record.task, record.id, facts["outcome"], _seconds(took), record.attempts,
            extra={"job": facts},
        )  # fmt: skip
        return
    facts["error_type"], facts["error_message"] = error.type, error.message
    final = outcome.state.is_final
    traceback = error.traceback if (final or log.isEnabledFor(logging.DEBUG)) else None
    if traceback:
        facts["traceback"] = traceback
    word = outcome.state.value if final else "failed"
    log.log(
        logging.ERROR if outcome.state is State.FAILED else logging.INFO,
        "%s[%s] %s in %s (attempt %d): %s: %s%s",
        record.task, record.id, word, _seconds(took), record.attempts, error.type, error.message,
        f"\n{traceback.rstrip()}" if traceback else "",
        extra={"job": facts},
    )  # fmt: skip
    if not final:
        _retry_scheduled(run, outcome, now=time.time() if now is None else now)


def _seconds(took: float) -> str:
    return f"{took * 1000:.2f} ms" if took < 1 else f"{took:.2f} s"


def _retry_scheduled(run: JobRun, outcome: Outcome, *, now: float) -> None:
    record = run.claim.record
    wait = max(0.0, (outcome.ready_at or now) - now)
    facts = {
        "task": record.task,
        "job_id": record.id,
        "queue": record.queue,
        "outcome": "retry scheduled",
        "attempt": record.attempts + 1,
        "retry_in_s": round(wait, 3),
    }
    log.info(
        "%s[%s] retry scheduled in %s (attempt %d next)",
        record.task, record.id, _seconds(wait), record.attempts + 1,
        extra={"job": facts},
    )  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a job's facts as fields
    of their own (``conveyor worker --log-format json``), for log collectors."""

    def converter(self, seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)  # times in UTC, as everywhere in conveyor

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        facts = getattr(record, "job", None)
        if isinstance(facts, dict):
            line.update(facts)
            # the message without the traceback: it is a field of its own
            line["message"] = record.getMessage().split("\n", 1)[0]
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)
