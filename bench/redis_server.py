"""The bench's own ``redis-server``: a free port on 127.0.0.1, a temporary directory, no
persistence (no RDB snapshots, no AOF) for every system alike; stopped by PID."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``with RedisServer() as server: server.url``"""

    def __init__(self, executable: str = "redis-server", *, prefix: tuple[str, ...] = ()) -> None:
        self.executable = shutil.which(executable) or executable
        self.prefix = prefix  # e.g. valgrind and its options (bench/delay_cost.py)
        self.port = 0
        self.url = ""
        self.version = ""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="conveyor-bench-redis-")
        self.port = free_port()
        log = Path(self._dir.name) / "redis.log"
        self._proc = subprocess.Popen(
            [*self.prefix, self.executable, "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", self._dir.name, "--save", "", "--appendonly", "no",
             "--logfile", str(log), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis  # here: a SQLite worker that imports this module must not load redis-py

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version = str(client.info("server")["redis_version"])
                break
            except redis.ConnectionError as exc:
                late = time.monotonic() > deadline + (50 if self.prefix else 0)
                if self._proc.poll() is not None or late:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from exc
                time.sleep(0.05)
        client.close()

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def flush(url: str) -> None:
    """Empty the whole server: every measurement starts from nothing."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
