"""bench/results.png: grouped bars, one group per rate (enqueue single, enqueue bulk, end to
end with one and two worker processes), one bar per system, medians with min–max whiskers."""

from __future__ import annotations

from pathlib import Path

from bench.runner import Results

GROUPS = (
    ("delay_per_s", "enqueue,\nsingle"),
    ("enqueue_many_per_s", "enqueue,\nbulk"),
    ("e2e_1p_per_s", "end to end,\n1 process"),
    ("e2e_2p_per_s", "end to end,\n2 processes"),
)


def write(results: Results, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results.summary()
    on_redis = {t.name: t.needs_redis for t in results.targets if t.name in summary}
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), sharey=False)
    for ax, store in zip(axes, ("redis", "sqlite"), strict=True):
        chosen = [n for n, redis in on_redis.items() if redis == (store == "redis")]
        width = 0.8 / max(1, len(chosen))
        for i, name in enumerate(chosen):
            stats = summary[name]
            xs, ys, lows, highs = [], [], [], []
            for g, (metric, _) in enumerate(GROUPS):
                stat = stats.get(metric)
                if stat is not None:
                    xs.append(g + (i - (len(chosen) - 1) / 2) * width)
                    ys.append(stat.median)
                    lows.append(stat.median - stat.low)
                    highs.append(stat.high - stat.median)
            bold = name.startswith("conveyor/")
            ax.bar(xs, ys, width, yerr=[lows, highs], capsize=2, label=name,
                   edgecolor="black" if bold else "none", linewidth=1.2)  # fmt: skip
        ax.set_xticks(range(len(GROUPS)), [label for _, label in GROUPS])
        ax.set_yscale("log")
        ax.set_ylabel("jobs per second (log scale; median, whiskers min–max)")
        ax.set_title(f"on {'Redis' if store == 'redis' else 'SQLite'}")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("conveyor benchmark: throughput and enqueue rates (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
