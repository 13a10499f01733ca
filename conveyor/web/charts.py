"""The dashboard's chart of the last hour, computed here so the template only draws it: one
bar per minute, jobs that succeeded stacked under jobs that failed, in inline SVG."""

from __future__ import annotations

from typing import Any

WIDTH = 600
HEIGHT = 90
MINUTES = 60


def _series(stats: Any) -> list[tuple[int, int]]:
    """(succeeded, failed) per minute, oldest first, from the stats' ``throughput``."""
    raw = stats.get("throughput") if isinstance(stats, dict) else getattr(stats, "throughput", None)
    rows: list[tuple[int, int]] = []
    for row in list(raw or [])[-MINUTES:]:
        if isinstance(row, dict):
            rows.append((int(row.get("succeeded", 0)), int(row.get("failed", 0))))
        else:
            ok, failed = (getattr(row, "succeeded", None), getattr(row, "failed", None))
            if ok is None:
                ok, failed = row[-2], row[-1]
            rows.append((int(ok), int(failed or 0)))
    return [(0, 0)] * (MINUTES - len(rows)) + rows


def throughput_chart(stats: Any) -> dict[str, Any]:
    series = _series(stats)
    peak = max((ok + failed for ok, failed in series), default=0)
    scale = (HEIGHT - 4) / peak if peak else 0.0
    step = WIDTH / MINUTES
    bars = []
    for i, (ok, failed) in enumerate(series):
        ok_h, failed_h = ok * scale, failed * scale
        bars.append(
            {
                "x": round(i * step + 1, 1),
                "w": round(step - 2, 1),
                "ok_y": round(HEIGHT - ok_h, 1),
                "ok_h": round(ok_h, 1),
                "failed_y": round(HEIGHT - ok_h - failed_h, 1),
                "failed_h": round(failed_h, 1),
                "title": f"{MINUTES - i} min ago: {ok} succeeded, {failed} failed",
            }
        )
    return {
        "bars": bars,
        "width": WIDTH,
        "height": HEIGHT,
        "peak": peak,
        "succeeded": sum(ok for ok, _ in series),
        "failed": sum(failed for _, failed in series),
    }
