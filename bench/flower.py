"""conveyor's dashboard beside Flower 2.2: ``python -m bench.flower [--tasks N]``
(``make bench-flower``).

One throwaway redis-server (bench/redis_server.py) holds both systems: Celery on db 0, conveyor
on db 1.

**Flower.** Flower is started first, as a process, because it only knows the tasks whose
events it saw: a task finished while it was down, or before it started, never shows. Then a
Celery worker (``-E``: task events on, 8 threads) and the Redis result backend run N no-op
tasks, enqueued in groups of 1,000, until Flower has counted N ``task-succeeded`` events (its
``/metrics``). Then: its tasks page (``/tasks``, an empty HTML shell) and the JSON the page's
table fetches next (``/tasks/datatable``, 15 rows newest first, as the browser asks), and
``/api/tasks?limit=50`` (which needs ``FLOWER_UNAUTHENTICATED_API=true`` without auth).
Flower runs with ``--persistent=True``, so on SIGTERM it writes its state to a shelve file;
it is restarted once without ``--persistent`` (what it lists: nothing) and once with it.

**conveyor.** ``app.asgi()`` under uvicorn (bench/web.py's server, in a process), started
on the empty store; N jobs written by bench/web.py's ``fill`` (succeeded, failed with a
traceback, and queued, over the last hour); a worker then runs the queued ones, so all N
have finished. Then its first page ``/`` (the jobs, the counts by state and the chart, all
rendered by the server) and ``/api/jobs?limit=50``; then a restart.

Both: p50/p95 over the requests (fewer if a page is slow: each path gets a time budget),
the server's RSS (VmRSS) before the tasks, after them, after the requests, after a restart.
Writes its own section of bench/RESULTS.md, leaving the rest of the file as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

from bench.flower_report import TITLE, markdown, versions
from bench.measures import percentile
from bench.procs import ROOT, _rss_kib
from bench.redis_server import RedisServer, free_port
from bench.web import SERVER, fill, timed

#: tasks sent per ``group(...).apply_async()``
CHUNK = 1000
#: seconds of requests each measured path may take at most (Flower's pages grow with N)
BUDGET_SECONDS = 40.0
MIN_REQUESTS = 5
#: what Flower's tasks page asks for first: 15 rows, sorted by "received", newest first
COLUMNS = ("name", "uuid", "state", "received", "runtime", "worker")
WORKER = """
import sys
from bench.flower import make_celery
make_celery(sys.argv[1]).worker_main(["worker", "-E", "--pool=threads", "--concurrency=8",
    "--loglevel=WARNING", "--without-gossip", "--without-mingle"])
"""


def make_celery(url: str, *, results: bool = True) -> Any:
    from celery import Celery

    from bench.systems.celery_peer import PREFETCH_MULTIPLIER

    app = Celery("bench", broker=url, backend=url if results else None, set_as_current=False)
    app.conf.update(
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="bench.noop")
    def noop() -> None:
        return None

    return app


class Process:
    """A server or worker of the bench's: its output in a log file, stopped by PID."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out: IO[bytes] = open(log, "ab")  # noqa: SIM115 -- closed in stop()
        environ = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=environ, stdout=self._out, stderr=self._out
        )

    def rss_mib(self) -> float:
        return _rss_kib(self.proc.pid) / 1024

    def wait_http(self, base: str, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.proc.args[:4]} exited: {self.tail()}")
                try:
                    if client.get(path).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{base}{path} did not answer: {self.tail()}")
                time.sleep(0.05)

    def tail(self) -> str:
        self._out.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def stop(self, timeout: float = 120.0) -> float:
        """SIGTERM by PID; the seconds it took to exit (SIGKILL after ``timeout``)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return time.monotonic() - started


def sample(client: httpx.Client, path: str, most: int) -> list[float]:
    """``most`` timed GETs of ``path``, or as many as fit in the time budget (≥ 5)."""
    probe = timed(client, path, 2)
    n = int(BUDGET_SECONDS * 1000 / max(1.0, statistics.mean(probe)))
    return probe + timed(client, path, max(MIN_REQUESTS, min(most, n)) - len(probe))


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


# -- Flower ----------------------------------------------------------------------------------


def datatable(length: int) -> str:
    query = {"draw": "1", "start": "0", "length": str(length), "search[value]": "",
             "order[0][column]": str(COLUMNS.index("received")),
             "order[0][dir]": "desc"}  # fmt: skip
    query |= {f"columns[{i}][data]": name for i, name in enumerate(COLUMNS)}
    return "/tasks/datatable?" + str(httpx.QueryParams(query))


def start_flower(url: str, workdir: Path, *, persistent: bool, name: str) -> tuple[Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "celery", "--broker", url, "--result-backend", url, "flower",
            "--address=127.0.0.1", f"--port={port}", f"--db={workdir / 'flower.db'}",
            f"--persistent={persistent}"]  # fmt: skip
    flower = Process(argv, workdir / f"{name}.log", {"FLOWER_UNAUTHENTICATED_API": "true"})
    base = f"http://127.0.0.1:{port}"
    flower.wait_http(base, "/healthcheck")
    return flower, base


def flower_count(base: str) -> int:
    return int(httpx.get(base + datatable(1), timeout=120).json()["recordsTotal"])


def succeeded_events(base: str) -> int:
    text = httpx.get(base + "/metrics", timeout=30).text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("flower_events_total{") and 'type="task-succeeded"' in line
        )
    )


def run_celery(url: str, base: str, tasks: int, workdir: Path) -> float:
    """Runs ``tasks`` no-ops through a Celery worker; returns once Flower has seen them all."""
    from celery import group

    # The sender reads no results: with a backend of its own, Celery's Redis backend would
    # subscribe to every task's result channel as it is sent (3 times slower). The worker
    # stores every result all the same.
    app = make_celery(url, results=False)
    noop = app.tasks["bench.noop"]
    worker = Process([sys.executable, "-c", WORKER, url], workdir / "celery-worker.log")
    started = time.monotonic()
    try:
        for start in range(0, tasks, CHUNK):
            group(noop.s() for _ in range(min(CHUNK, tasks - start))).apply_async()
            sent = min(tasks, start + CHUNK)
            print(f"\r  celery: {sent:,} sent", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

        def remaining() -> int:
            return tasks - succeeded_events(base)

        wait_for(remaining, "celery: tasks Flower has not seen finish", worker)
        return time.monotonic() - started
    finally:
        worker.stop()
        app.close()


def wait_for(remaining: Callable[[], int], what: str, proc: Process) -> None:
    """Polls until ``remaining()`` is 0, while ``proc`` (which does the work) lives."""
    deadline = time.monotonic() + 600
    while (left := remaining()) > 0:
        print(f"\r  {what}: {left:,}      ", end="", file=sys.stderr, flush=True)
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {left:,}: {proc.tail()}")
        time.sleep(1)
    print(f"\r  {what}: 0        ", file=sys.stderr)


def measure_flower(url: str, tasks: int, requests: int, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    flower, base = start_flower(url, workdir, persistent=True, name="flower")
    try:
        out["rss_before"] = flower.rss_mib()
        out["run_seconds"] = run_celery(url, base, tasks, workdir)
        time.sleep(2)  # the last events' bookkeeping
        out["rss_after_tasks"] = flower.rss_mib()
        out["listed"] = flower_count(base)
        with httpx.Client(base_url=base, timeout=300) as client:
            out["page"] = summary(sample(client, "/tasks", requests))
            out["data"] = summary(sample(client, datatable(15), requests))
            out["api"] = summary(sample(client, "/api/tasks?limit=50", requests))
        out["rss_after_requests"] = flower.rss_mib()
    finally:
        out["stop_seconds"] = flower.stop()  # with --persistent: writes its state
    for persistent in (False, True):
        started = time.monotonic()
        flower, base = start_flower(
            url, workdir, persistent=persistent, name=f"flower-{persistent}"
        )
        try:
            key = "persistent" if persistent else "restart"
            out[f"{key}_start_seconds"] = time.monotonic() - started
            out[f"{key}_listed"] = flower_count(base)
            out[f"{key}_rss"] = flower.rss_mib()
        finally:
            flower.stop()
    return out


# -- conveyor --------------------------------------------------------------------------------


def start_dashboard(url: str, workdir: Path, name: str) -> tuple[Process, str]:
    port = free_port()
    server = Process([sys.executable, "-c", SERVER, url, str(port)], workdir / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    server.wait_http(base, "/healthz")
    return server, base


def conveyor_counts(base: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for queue in httpx.get(base + "/api/queues", timeout=60).json()["items"]:
        for state, n in queue["states"].items():
            totals[state] = totals.get(state, 0) + n
    return totals


def finish_queued(url: str, base: str, workdir: Path) -> None:
    """The jobs ``fill`` left queued are run by a real worker, so that all have finished."""
    env = {"CONVEYOR_URL": url, "CONVEYOR_NAMESPACE": "webbench"}
    argv = [sys.executable, "-m", "conveyor", "-A", "bench.apps:app", "worker",
            "--log-level=warning"]  # fmt: skip
    worker = Process(argv, workdir / "conveyor-worker.log", env)
    try:
        wait_for(lambda: conveyor_counts(base)["queued"], "conveyor: jobs queued", worker)
    finally:
        worker.stop()


def measure_conveyor(url: str, tasks: int, requests: int, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    server, base = start_dashboard(url, workdir, "dashboard")
    try:
        out["rss_before"] = server.rss_mib()
        started = time.monotonic()
        fill(url, tasks)
        finish_queued(url, base, workdir)
        out["run_seconds"] = time.monotonic() - started
        out["rss_after_tasks"] = server.rss_mib()
        out["listed"] = sum(conveyor_counts(base).values())
        with httpx.Client(base_url=base, timeout=300) as client:
            out["page"] = summary(sample(client, "/", requests))
            out["api"] = summary(sample(client, "/api/jobs?limit=50", requests))
        out["rss_after_requests"] = server.rss_mib()
    finally:
        out["stop_seconds"] = server.stop()
    started = time.monotonic()
    server, base = start_dashboard(url, workdir, "dashboard-restarted")
    try:
        out["restart_start_seconds"] = time.monotonic() - started
        out["restart_listed"] = sum(conveyor_counts(base).values())
        out["restart_rss"] = server.rss_mib()
    finally:
        server.stop()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flower", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100, help="per path, at most")
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("flower") is None or importlib.util.find_spec("celery") is None:
        parser.error("needs Celery and Flower: run it with `make bench-flower` (bench/.env)")
    command = shlex.join(["python", "-m", "bench.flower", *argv])
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="conveyor-flower-") as tmp:
        base_url = server.url.rsplit("/", 1)[0]
        print(f"Flower: {args.tasks:,} Celery tasks", file=sys.stderr)
        flower = measure_flower(base_url + "/0", args.tasks, args.requests, Path(tmp))
        print(f"conveyor: {args.tasks:,} jobs", file=sys.stderr)
        conv = measure_conveyor(base_url + "/1", args.tasks, args.requests, Path(tmp))
        text = markdown(flower, conv, args.tasks, versions(server.version))
    print(text)
    if not args.no_results:
        from bench.like import write_section

        write_section("flower", text, command, title=TITLE, make="bench-flower")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
