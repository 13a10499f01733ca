"""conveyor against its peers, as ratios of medians: for each store, conveyor's target
beside the best peer on that store (and each peer system's best target), with issue 6's
ratio targets marked met or missed."""

from __future__ import annotations

from dataclasses import dataclass

from bench.runner import Results, Stat
from bench.systems import PEERS

#: metric, label, True when higher is better
MEASURES = (
    ("delay_per_s", "delay() jobs/s", True),
    ("enqueue_many_per_s", "enqueue_many jobs/s", True),
    ("e2e_1p_per_s", "end to end, 1 process, jobs/s", True),
    ("e2e_2p_per_s", "end to end, 2 processes, jobs/s", True),
    ("pickup_p50_ms", "pickup p50, ms", False),
    ("pickup_p99_ms", "pickup p99, ms", False),
    ("rss_mb", "worker RSS, MiB", False),
)


@dataclass(frozen=True, slots=True)
class Comparison:
    conveyor: str
    peers: tuple[str, ...]  # target names that count; a prefix match on the name
    title: str
    #: metric -> (least advantage, where it is written)
    goals: tuple[tuple[str, float, str], ...] = ()


COMPARISONS = (
    Comparison(
        "conveyor/redis",
        ("celery/", "dramatiq/", "huey/redis", "rq/"),
        "Redis: conveyor/redis against Celery, Dramatiq, Huey and RQ on the same server",
        (("e2e_1p_per_s", 4.0, "issue 6"),),
    ),
    Comparison(
        "conveyor/sqlite-normal",
        ("huey/sqlite",),
        "SQLite NORMAL: conveyor/sqlite-normal against Huey on SQLite (FULL and OFF)",
        (("e2e_1p_per_s", 4.5, "issue 6"),),
    ),
    Comparison(
        "conveyor/sqlite-full",
        ("huey/sqlite",),
        "SQLite FULL: conveyor/sqlite-full against Huey on SQLite (FULL and OFF)",
    ),
)


def advantage(conveyor: Stat, peer: Stat, higher: bool) -> float:
    """How many times better conveyor's median is (above 1: conveyor wins)."""
    if higher:
        return conveyor.median / peer.median if peer.median else float("inf")
    return peer.median / conveyor.median if conveyor.median > 0 else float("inf")


def best(stats: dict[str, Stat], higher: bool) -> tuple[str, Stat] | None:
    if not stats:
        return None
    pick = max if higher else min
    name = pick(stats, key=lambda n: stats[n].median)
    return name, stats[name]


def markdown(results: Results) -> list[str]:
    summary = results.summary()
    names = [t.name for t in results.targets if t.name in summary]
    lines = [
        "## conveyor against the best peer",
        "",
        "Ratios of medians, written as conveyor's advantage: conveyor ÷ peer for rates, "
        "peer ÷ conveyor for latencies and memory, so above 1× conveyor is better.",
        "",
    ]
    for comp in COMPARISONS:
        if comp.conveyor not in summary:
            continue
        peers = [n for n in names if n.split("/")[0] in PEERS and n.startswith(comp.peers)]
        if not peers:
            continue
        systems = list(dict.fromkeys(n.split("/")[0] for n in peers))
        per_system = ["vs " + s for s in systems] if len(systems) > 1 else []
        lines += [f"### {comp.title}", ""]
        head = ["measure", "conveyor", "best peer", "advantage", *per_system, "target"]
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        goals = {metric: (least, source) for metric, least, source in comp.goals}
        for metric, label, higher in MEASURES:
            mine = summary[comp.conveyor].get(metric)
            theirs = {n: summary[n][metric] for n in peers if metric in summary[n]}
            top = best(theirs, higher)
            if mine is None or top is None:
                continue
            ratio = advantage(mine, top[1], higher)
            cells = [label, f"{mine.median:,.2f}", f"{top[1].median:,.2f} ({top[0]})"]
            cells.append(f"{ratio:,.2f}×")
            for system in per_system:
                own = {n: s for n, s in theirs.items() if n.startswith(system[3:] + "/")}
                pick = best(own, higher)
                cells.append(f"{advantage(mine, pick[1], higher):,.2f}×" if pick else "—")
            goal = goals.get(metric)
            mark = ""
            if goal is not None:
                verdict = "met ✓" if ratio >= goal[0] else "missed ✗"
                mark = f"≥ {goal[0]:g}× ({goal[1]}): {verdict}"
            lines.append("| " + " | ".join([*cells, mark]) + " |")
        lines.append("")
    lines += scaling(summary)
    return lines


def scaling(summary: dict[str, dict[str, Stat]]) -> list[str]:
    """Issue 6: two processes on one SQLite file ≥ 1.5× one."""
    stats = summary.get("conveyor/sqlite-normal", {})
    one, two = stats.get("e2e_1p_per_s"), stats.get("e2e_2p_per_s")
    if one is None or two is None or not one.median:
        return []
    ratio = two.median / one.median
    verdict = "met ✓" if ratio >= 1.5 else "missed ✗"
    return [
        f"conveyor/sqlite-normal, two worker processes on one file ÷ one: {ratio:.2f}× "
        f"(≥ 1.5×, issue 6: {verdict}).",
        "",
    ]
