"""The bench's own PostgreSQL: ``initdb`` into a temporary directory, the postmaster on a
free port of 127.0.0.1 (its socket in that directory, never the machine's service), fsync off
for every system alike; stopped by PID. As root, it runs as the ``postgres`` OS user (initdb
refuses root)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.redis_server import free_port


def bindir() -> Path:
    """Debian's /usr/lib/postgresql/N/bin (the newest N), else where PATH finds initdb."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("initdb is not installed (apt-get install postgresql)")
    return Path(initdb).parent


class PostgresServer:
    """``with PostgresServer() as server: server.url``"""

    def __init__(self, **settings: str) -> None:
        self.settings = {"fsync": "off", "max_connections": "300", **settings}
        self.port = 0
        self.url = ""
        self.version = ""
        self._dir = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {"user": "postgres", "group": "postgres"}
        if os.geteuid() != 0:
            self._as = {}

    @property
    def pid(self) -> int:
        """The postmaster's PID: the process this object started."""
        assert self._proc is not None, "the server is not running"
        return self._proc.pid

    def start(self, timeout: float = 60.0) -> None:
        self._dir = tempfile.mkdtemp(prefix="conveyor-bench-pg-")
        if self._as:
            shutil.chown(self._dir, "postgres", "postgres")
        data, binaries = os.path.join(self._dir, "data"), bindir()
        subprocess.run(
            [str(binaries / "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            check=True, capture_output=True, **self._as,
        )  # fmt: skip
        self.port = free_port()
        options = [f"-c{name}={value}" for name, value in self.settings.items()]
        self._proc = subprocess.Popen(
            [str(binaries / "postgres"), "-D", data, "-p", str(self.port),
             "-clisten_addresses=127.0.0.1", f"-cunix_socket_directories={self._dir}",
             *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self._as,
        )  # fmt: skip
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        import psycopg  # here: a worker of another store must not load psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    self.version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
                break
            except psycopg.OperationalError as exc:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start on port {self.port}") from exc
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    self._proc.wait(30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
