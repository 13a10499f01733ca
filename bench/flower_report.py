"""The section bench/flower.py writes into bench/RESULTS.md: the table and what it shows."""

from __future__ import annotations

from typing import Any

TITLE = "The dashboard beside Flower 2.2"
#: how long Docker (``docker stop``) waits after SIGTERM before it kills a container
DOCKER_STOP_SECONDS = 10


def versions(redis_version: str) -> dict[str, str]:
    from importlib.metadata import version

    names = ("celery", "flower", "conveyor", "uvicorn")
    return {name: version(name) for name in names} | {"redis-server": redis_version}


def ms(s: dict[str, float]) -> str:
    return f"{s['p50']:.1f} ({s['p95']:.1f}), n={s['n']:.0f}"


def table(flower: dict[str, Any], conv: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        ("tasks run / jobs written and finished, s", f"{flower['run_seconds']:.0f}",
         f"{conv['run_seconds']:.0f} (written straight into the store, then a worker)"),
        ("listed after the run", f"{flower['listed']:,}", f"{conv['listed']:,}"),
        ("tasks page, p50 (p95) ms", f"`/tasks` (an empty shell): {ms(flower['page'])}",
         f"`/` (rows, counts by state, chart): {ms(conv['page'])}"),
        ("the page's rows, p50 (p95) ms", f"`/tasks/datatable` (15 rows): {ms(flower['data'])}",
         "in the page above"),
        ("JSON list of 50, p50 (p95) ms", f"`/api/tasks?limit=50`: {ms(flower['api'])}",
         f"`/api/jobs?limit=50`: {ms(conv['api'])}"),
        ("RSS before the tasks, MiB", f"{flower['rss_before']:.1f}", f"{conv['rss_before']:.1f}"),
        ("RSS after the tasks, MiB", f"{flower['rss_after_tasks']:.1f}",
         f"{conv['rss_after_tasks']:.1f}"),
        ("RSS after the requests, MiB", f"{flower['rss_after_requests']:.1f}",
         f"{conv['rss_after_requests']:.1f}"),
        ("SIGTERM to exit, s", f"{flower['stop_seconds']:.1f} (writes its state)",
         f"{conv['stop_seconds']:.1f}"),
        ("restarted: listed (RSS MiB, ready in s)",
         f"{flower['restart_listed']:,} ({flower['restart_rss']:.1f}, "
         f"{flower['restart_start_seconds']:.1f})",
         f"{conv['restart_listed']:,} ({conv['restart_rss']:.1f}, "
         f"{conv['restart_start_seconds']:.1f})"),
        ("restarted with `--persistent=True`: listed (RSS MiB, ready in s)",
         f"{flower['persistent_listed']:,} ({flower['persistent_rss']:.1f}, "
         f"{flower['persistent_start_seconds']:.1f})",
         "(nothing to restore: the store is durable)"),
    ]  # fmt: skip


def shows(flower: dict[str, Any], conv: dict[str, Any], tasks: int) -> str:
    """The paragraph under the table, from this run's numbers."""
    docker = (
        f"longer than the {DOCKER_STOP_SECONDS} s `docker stop` waits before it kills: the "
        "state would not be written"
        if flower["stop_seconds"] > DOCKER_STOP_SECONDS
        else f"within the {DOCKER_STOP_SECONDS} s `docker stop` waits"
    )
    return (
        f"Flower holds every task it saw in its own memory: its RSS went from "
        f"{flower['rss_before']:.0f} to {flower['rss_after_tasks']:.0f} MiB over {tasks:,} "
        f"tasks; conveyor's web process went from {conv['rss_before']:.0f} to "
        f"{conv['rss_after_requests']:.0f} MiB (it reads the store on each request). "
        "Flower's tasks page is a shell; the table then "
        f"asks `/tasks/datatable`, which filters and sorts all {flower['listed']:,} tasks in "
        f"Python on every request (p50 {flower['data']['p50']:.0f} ms for 15 rows), and "
        f"`/api/tasks?limit=50` takes {flower['api']['p50']:.0f} ms; conveyor renders its "
        f"whole first page, rows, counts and chart, in {conv['page']['p50']:.0f} ms and "
        f"answers `/api/jobs?limit=50` in {conv['api']['p50']:.0f} ms (p50s). Restarted, "
        f"Flower lists {flower['restart_listed']:,} tasks: it knows only the events it saw "
        f"while it ran (a task that finished while it was down never shows, nor, unless the "
        f"senders turn on `task_send_sent_event`, one that no worker has received yet). "
        "With `--persistent=True` it pickles its state on SIGTERM "
        f"({flower['stop_seconds']:.0f} s here, {docker}) and reads it back: "
        f"{flower['persistent_listed']:,} tasks, {flower['persistent_rss']:.0f} MiB. conveyor "
        f"lists all {conv['restart_listed']:,} jobs as soon as it answers. Caveats: wall-clock "
        "numbers on a shared 2-core machine (the load average is above); conveyor's jobs were "
        "written straight into the store by bench/web.py's `fill` (80% succeeded, 15% failed "
        "with a traceback, 5% queued and then run by a worker), Celery's all ran through its "
        "worker; Flower 2.2 keeps at most `--max_tasks` (default 100,000) and forgets the "
        "oldest beyond; its API needs `FLOWER_UNAUTHENTICATED_API=true` without auth."
    )


def markdown(flower: dict[str, Any], conv: dict[str, Any], tasks: int, vers: dict[str, str]) -> str:
    lines = [
        f"{tasks:,} finished tasks each, on one redis-server: "
        + ", ".join(f"{k} {v}" for k, v in vers.items())
        + ". Flower: `celery flower --persistent=True` as a process, started before the "
        "tasks (restarted once without `--persistent`, once with it); a Celery worker with "
        "`-E`, 8 threads, the Redis result backend. conveyor: `app.asgi()` under uvicorn, "
        "one process, on another database of the same server.",
        "",
        f"| | Flower {vers['flower']} | conveyor {vers['conveyor']} |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table(flower, conv)]
    lines += ["", shows(flower, conv, tasks)]
    return "\n".join(lines) + "\n"
