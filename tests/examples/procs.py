"""Processes the example tests start: each example as its README runs it, stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """Output goes to a file, not a pipe: a chatty server never blocks on a full pipe."""

    def __init__(self, *command: str, env: dict[str, str] | None = None) -> None:
        self._output = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by stop or kill)
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self._output.seek(0)
        return self._output.read()

    def kill(self) -> str:
        """SIGKILL: what a crash or an OOM killer does."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return self._close()

    def stop(self, timeout: float = 60) -> str:
        """SIGTERM, then wait; returns what it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return self._close()

    def _close(self) -> str:
        if self._output.closed:
            return ""
        out = self.output()
        self._output.close()
        return out

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None
