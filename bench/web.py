"""The web face with a big store: ``python -m bench.web [--jobs N] [--store sqlite|redis]``.

Fills a store with N jobs (default 1,000,000: mostly succeeded, some failed, some queued,
finished over the last hour), serves ``app.asgi()`` with uvicorn in a process of its own, and
times ``GET /api/jobs?limit=50`` (p50 target 50 ms) and the dashboard's first page (p50
target 300 ms, the chart and the counts by state included), reading the server's RSS before
and after many requests (it should stay flat: pages are read from the store, not cached).
Writes bench/WEB.md. Not part of ``make bench``: it takes minutes to fill the store.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.apps import NOOP, make_app
from bench.measures import percentile
from bench.procs import _rss_kib
from bench.redis_server import RedisServer, free_port
from conveyor.job import ErrorInfo, State

HERE = Path(__file__).parent
BATCH = 5000


def fill(url: str, total: int) -> float:
    """Write ``total`` jobs straight into the store; returns the seconds it took."""
    app = make_app(url, namespace="webbench")
    from conveyor.task import CallOptions

    started = time.monotonic()
    now = time.time()
    options = CallOptions()
    error = ErrorInfo("ValueError", "bad input", "Traceback (most recent call last): ...")
    written = 0
    while written < total:
        batch = []
        for i in range(written, min(total, written + BATCH)):
            record = app.make_record(NOOP, (), {}, options, now=now - 3600 + 3600 * i / total)
            kind = i % 20
            if kind < 16 or kind == 19:
                state = State.SUCCEEDED if kind < 16 else State.QUEUED
            else:
                state = State.FAILED
            if state is not State.QUEUED:
                record.state, record.attempts = state, 1
                record.started_at = record.created_at
                record.finished_at = record.created_at + 0.01
                record.purge_at = now + 86400
                record.error = error if state is State.FAILED else None
                record.result = b"null" if state is State.SUCCEEDED else None
            batch.append(record)
        app.backend.enqueue(batch)
        written += len(batch)
        print(f"\r  {written:,} jobs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    app.close()
    return time.monotonic() - started


SERVER = """
import sys, uvicorn
from bench.apps import make_app
app = make_app(sys.argv[1], namespace="webbench")
uvicorn.run(app.asgi(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def timed(client: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return out


def measure(url: str, requests: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port)], cwd=HERE.parent)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.1)
            timed(client, "/api/jobs?limit=50", 5)  # warm up
            timed(client, "/", 3)
            rss_before = _rss_kib(proc.pid) / 1024
            api = timed(client, "/api/jobs?limit=50", requests)
            failed = timed(client, "/api/jobs?limit=50&state=failed", requests)
            page = timed(client, "/", max(10, requests // 5))
            cursor = client.get("/api/jobs?limit=50").json()["next_cursor"]
            deep = timed(client, f"/api/jobs?limit=50&cursor={cursor}", requests)
            rss_after = _rss_kib(proc.pid) / 1024
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "api_p50": percentile(api, 50),
        "api_p95": percentile(api, 95),
        "failed_p50": percentile(failed, 50),
        "next_page_p50": percentile(deep, 50),
        "page_p50": percentile(page, 50),
        "page_p95": percentile(page, 95),
        "rss_before": rss_before,
        "rss_after": rss_after,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "redis"], action="append")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args(argv)
    rows = []
    for store in args.store or ["sqlite", "redis"]:
        with tempfile.TemporaryDirectory(prefix="conveyor-webbench-") as tmp:
            server = RedisServer() if store == "redis" else None
            if server is not None:
                server.start()
            try:
                url = server.url if server else f"sqlite:///{tmp}/jobs.db"
                print(f"{store}: filling {args.jobs:,} jobs", file=sys.stderr)
                seconds = fill(url, args.jobs)
                result = measure(url, args.requests)
            finally:
                if server is not None:
                    server.stop()
        rows.append((store, seconds, result))
        print(store, {k: round(v, 1) for k, v in result.items()}, file=sys.stderr)
    write(rows, args)
    return 0


def write(rows: list[tuple[str, float, dict[str, float]]], args: argparse.Namespace) -> None:
    lines = [
        "# The web face with a big store",
        "",
        "Written by `python -m bench.web` (see its docstring); do not edit by hand.",
        "",
        f"Command: `python -m bench.web --jobs {args.jobs} --requests {args.requests}` "
        f"(stores: {', '.join(args.store or ['sqlite', 'redis'])})  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC on {platform.platform()}, "
        f"Python {platform.python_version()}",
        "",
        "| store | jobs | fill s | /api/jobs?limit=50 p50 (p95) ms | state=failed p50 ms | "
        "next page p50 ms | dashboard / p50 (p95) ms | server RSS before → after MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    measured = {store for store, _, _ in rows}
    path = HERE / "WEB.md"
    # rows of a store not measured this time stay as the last run wrote them
    kept = [
        line
        for line in (path.read_text().splitlines() if path.exists() else [])
        if line.startswith("| ") and line.split(" | ")[0][2:] in {"sqlite", "redis"} - measured
    ]
    lines += kept
    for store, seconds, r in rows:
        lines.append(
            f"| {store} | {args.jobs:,} | {seconds:.0f} | {r['api_p50']:.1f} ({r['api_p95']:.1f}) "
            f"{'✓' if r['api_p50'] <= 50 else '✗'} | {r['failed_p50']:.1f} | "
            f"{r['next_page_p50']:.1f} | {r['page_p50']:.1f} ({r['page_p95']:.1f}) "
            f"{'✓' if r['page_p50'] <= 300 else '✗'} | {r['rss_before']:.1f} → "
            f"{r['rss_after']:.1f} |"
        )
    lines += ["", "Targets (issue 11): API p50 ≤ 50 ms, dashboard p50 ≤ 300 ms, RSS flat.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
