"""Real worker processes for the fault tests, stopped by PID."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import conveyor

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    stderr = ""

    def __init__(
        self,
        url: str,
        *args: str,
        namespace: str | None = None,
        module: str = "tests.worker.fault_app",
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        env = dict(os.environ, **(env or {}), CONVEYOR_URL=url, PYTHONPATH=str(ROOT))
        if namespace:
            env["CONVEYOR_NAMESPACE"] = namespace
        # A file, not a pipe: a worker that logs much would block on a full pipe nobody reads.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", module, *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def freeze(self) -> float:
        """SIGSTOP the worker between two writes; returns when it was stopped.

        On SQLite a process frozen inside a write keeps the file's write lock, and every
        writer waits for it until it resumes (SQLite's nature; docs/sqlite.md says so). The
        tests that freeze a worker are about its leases, not about that, so a worker found
        holding the writers' gate once stopped is resumed for a moment and stopped again.
        """
        gate = sqlite_gate(self.url)
        for _ in range(1000):
            self.signal(signal.SIGSTOP)
            stopped = time.time()
            if gate is None or gate_is_free(gate):
                return stopped
            self.signal(signal.SIGCONT)
            time.sleep(0.005)
        raise AssertionError("the worker held the SQLite writers' gate at each of 1,000 stops")

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Terminate by PID; kill if it does not go within 30 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self._stderr.closed:
            self._stderr.seek(0)
            self.stderr = self._stderr.read().decode(errors="replace")
            self._stderr.close()


def sqlite_gate(url: str) -> str | None:
    """The writers' gate file of the SQLite store at ``url``; None for other stores."""
    if not url.startswith("sqlite:"):
        return None
    from conveyor.backends.sqlite.connections import GATE_SUFFIX
    from conveyor.backends.sqlite.store import parse_url

    return parse_url(url).path + GATE_SUFFIX


def gate_is_free(gate: str) -> bool:
    """Whether no process holds the gate's flock (taken and let go at once if free)."""
    fd = os.open(gate, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor lets the flock go
    return True


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds (a bound, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def client_for(url: str, namespace: str) -> conveyor.App:
    """An app on the store at ``url`` that knows fault_app's task names."""
    from tests.worker import fault_app

    app = conveyor.App(url, namespace=namespace)
    app.registry = fault_app.app.registry
    return app
