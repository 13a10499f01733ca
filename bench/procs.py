"""Worker processes for the benchmark: started together, released together with ``go``,
stopped by PID with SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]

#: the task body a worker runs (bench/bodies.py) and the Redis URL it talks to
Body = tuple[str, str]


class WorkerProcess:
    def __init__(
        self,
        system: str,
        spec: dict[str, Any],
        concurrency: int,
        log_path: Path,
        *,
        body: Body | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        request: dict[str, Any] = {"system": system, "spec": spec, "concurrency": concurrency}
        if body is not None:
            request["body"], request["body_url"] = body
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "bench.worker", json.dumps(request)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if line != "ready":
            raise RuntimeError(f"worker {self.pid} did not get ready: {self.log_tail()}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"worker {self.pid} exited with {self.proc.returncode}: {self.log_tail()}"
            )

    def rss_mb(self) -> float:
        """Resident set size now (VmRSS of /proc/PID/status), in MiB, summed over the process
        and its descendants (Celery's prefork children count: they are its worker)."""
        return sum(_rss_kib(pid) for pid in process_tree(self.pid)) / 1024

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(no output)"

    def stop(self) -> None:
        """SIGTERM by PID; SIGKILL if it has not gone within 30 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


#: clock ticks a second, the unit of /proc/<pid>/stat's CPU times
TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command's name (which may hold spaces):
    [1] the parent's PID, [11] and [12] user and system CPU, [13] and [14] those of the
    children it has reaped, in ``TICK``s."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the thread or the process has gone
                todo += [int(child) for child in task.read_text().split()]
    return pids


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass  # gone between listing and reading: it holds no memory
    return 0


class Workers:
    """Several worker processes on one store: ``with Workers(...) as w: w.go()``."""

    def __init__(
        self,
        system: str,
        spec: dict[str, Any],
        *,
        processes: int,
        concurrency: int,
        logdir: Path,
        ready_timeout: float = 60.0,
        body: Body | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self._args = (system, spec, concurrency)
        self._body = body
        self._prefix = prefix
        self._count = processes
        self._logdir = logdir
        self._ready_timeout = ready_timeout
        self.procs: list[WorkerProcess] = []

    def __enter__(self) -> Workers:
        system, spec, concurrency = self._args
        try:
            for i in range(self._count):
                log = self._logdir / f"worker-{system}-{os.getpid()}-{time.time_ns()}-{i}.log"
                self.procs.append(
                    WorkerProcess(
                        system, spec, concurrency, log, body=self._body, prefix=self._prefix
                    )
                )
            for proc in self.procs:
                proc.wait_ready(self._ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def go(self) -> None:
        for proc in self.procs:
            proc.go()

    def check_alive(self) -> None:
        for proc in self.procs:
            proc.check_alive()

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def __exit__(self, *exc: object) -> None:
        self.stop()
