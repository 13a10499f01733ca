"""Repetitions, interleaved: each repetition runs every measurement on every target in turn,
so that a drift of the machine (another process, a warm cache) spreads over all targets
instead of favouring one. The summary is the median with min and max over repetitions."""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.core import Target
from bench.measures import MEASURES, Context

Raw = dict[str, dict[str, list[float]]]  # target -> metric -> one value per repetition
E2E = re.compile(r"e2e_(\d+)p_c(\d+)_per_s")


@dataclass(frozen=True, slots=True)
class Stat:
    median: float
    low: float
    high: float
    setting: str = ""  # the configuration it was measured with, when one was chosen

    @classmethod
    def of(cls, values: Sequence[float], setting: str = "") -> Stat:
        return cls(statistics.median(values), min(values), max(values), setting)

    def as_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "setting": self.setting}


@dataclass(slots=True)
class Results:
    targets: list[Target]
    raw: Raw = field(default_factory=dict)
    #: the 1-minute load average before each measurement: how busy the machine was
    load: list[dict[str, Any]] = field(default_factory=list)

    def add(self, target: Target, samples: dict[str, float]) -> None:
        metrics = self.raw.setdefault(target.name, {})
        for metric, value in samples.items():
            metrics.setdefault(metric, []).append(value)

    def summary(self) -> dict[str, dict[str, Stat]]:
        return {name: summarise(metrics) for name, metrics in self.raw.items()}


def summarise(metrics: dict[str, list[float]]) -> dict[str, Stat]:
    """Every metric, plus ``e2e_Np_per_s``: the best concurrency (by median) for N worker
    processes, and ``rss_mb``: the worker's RSS after the one-process run at that setting."""
    out = {metric: Stat.of(values) for metric, values in metrics.items()}
    best: dict[int, tuple[int, Stat]] = {}
    for metric, stat in out.items():
        match = E2E.fullmatch(metric)
        if match:
            procs, concurrency = int(match[1]), int(match[2])
            if procs not in best or stat.median > best[procs][1].median:
                best[procs] = (concurrency, stat)
    chosen = dict(out)
    for procs, (concurrency, stat) in sorted(best.items()):
        setting = f"concurrency {concurrency}"
        chosen[f"e2e_{procs}p_per_s"] = Stat(stat.median, stat.low, stat.high, setting)
        rss = out.get(f"rss_{procs}p_c{concurrency}_mb")
        if procs == 1 and rss is not None:
            chosen["rss_mb"] = Stat(rss.median, rss.low, rss.high, setting)
    return chosen


def run(
    targets: list[Target],
    measures: list[str],
    ctx: Context,
    progress: Callable[[str], None],
) -> Results:
    results = Results(targets)
    for rep in range(1, ctx.sizes.repetitions + 1):
        for name in measures:
            for target in targets:
                load = os.getloadavg()[0]
                results.load.append(
                    {"repetition": rep, "measure": name, "target": target.name, "load1": load}
                )
                progress(
                    f"repetition {rep}/{ctx.sizes.repetitions}: {name} on {target.name} "
                    f"(load {load:.1f})"
                )
                samples = MEASURES[name](target, ctx)
                results.add(target, samples)
                if samples:
                    progress("  " + ", ".join(f"{k} {v:,.1f}" for k, v in samples.items()))
    return results
