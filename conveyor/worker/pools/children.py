"""The process pool's handle on one child process: its pipe, pid and memory, how its exit is
told to the user, and how a signal reaches everything its task started. Apart from
``process.py`` so the pool there reads as the slots' loop; ``child.py`` is the child's own side."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"child process killed by {name}{hint}"
    return f"child process exited with status {code}"


@dataclass(eq=False)
class Child:
    process: Any  # multiprocessing's SpawnProcess
    conn: Connection
    pid: int = 0
    jobs: int = 0
    rss: int = 0
    kill_at: float | None = None  # monotonic time to send SIGKILL, once terminated
    # one poll object per pipe: Connection.poll() builds a selector on every call
    poller: Any = None

    def __post_init__(self) -> None:
        self.poller = select.poll()
        self.poller.register(self.conn.fileno(), select.POLLIN)

    def readable(self, timeout: float) -> bool:
        return bool(self.poller.poll(max(0, int(timeout * 1000 + 0.999))))

    def current_rss(self) -> int:
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return self.rss


def signal_group(child: Child, sig: int) -> None:
    """Send ``sig`` to the child's process group: the child and everything its task started.
    Before the child reported its pid (and so its group), only the child itself."""
    if child.pid <= 0:
        with contextlib.suppress(OSError, ValueError):
            if sig == signal.SIGKILL:
                child.process.kill()
            else:
                child.process.terminate()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)
