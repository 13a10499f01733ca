"""The dashboard's chart of the last hour, computed here so the template only draws it: one
bar per minute, jobs that succeeded stacked under jobs that failed, in inline SVG.

It counts the newest finished jobs the store lists (at most ``SAMPLE`` of each outcome), so
it stays cheap with millions of jobs; past that many in an hour the caption says so."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.job import JobInfo

WIDTH = 600
HEIGHT = 90
MINUTES = 60
SAMPLE = 500


def _per_minute(jobs: Sequence[JobInfo], now: float) -> list[int]:
    counts = [0] * MINUTES
    for info in jobs:
        if info.finished_at is None:
            continue
        age = now - info.finished_at.timestamp()
        if 0 <= age < MINUTES * 60:
            counts[MINUTES - 1 - int(age // 60)] += 1
    return counts


def throughput_chart(
    succeeded: Sequence[JobInfo], failed: Sequence[JobInfo], now: float
) -> dict[str, Any]:
    ok_series, failed_series = _per_minute(succeeded, now), _per_minute(failed, now)
    peak = max((a + b for a, b in zip(ok_series, failed_series, strict=True)), default=0)
    scale = (HEIGHT - 4) / peak if peak else 0.0
    step = WIDTH / MINUTES
    bars = []
    for i, (ok, bad) in enumerate(zip(ok_series, failed_series, strict=True)):
        ok_h, failed_h = ok * scale, bad * scale
        bars.append(
            {
                "x": round(i * step + 1, 1),
                "w": round(step - 2, 1),
                "ok_y": round(HEIGHT - ok_h, 1),
                "ok_h": round(ok_h, 1),
                "failed_y": round(HEIGHT - ok_h - failed_h, 1),
                "failed_h": round(failed_h, 1),
                "title": f"{MINUTES - i} min ago: {ok} succeeded, {bad} failed",
            }
        )
    return {
        "bars": bars,
        "width": WIDTH,
        "height": HEIGHT,
        "peak": peak,
        "succeeded": sum(ok_series),
        "failed": sum(failed_series),
        "capped": len(succeeded) >= SAMPLE or len(failed) >= SAMPLE,
        "sample": SAMPLE,
    }
