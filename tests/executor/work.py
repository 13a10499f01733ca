"""Callables for the executor tests, importable by name in every process; ``app`` is what
``conveyor worker -A tests.executor.work:app`` serves (its URL from CONVEYOR_URL)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import conveyor

app = conveyor.App()


def square_slowly(x: int, marker_dir: str, seconds: float = 0.3) -> int:
    """Sleep, then leave a file per run (a run killed half-way leaves none)."""
    time.sleep(seconds)
    (Path(marker_dir) / f"{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
    return x * x


def fail(message: str) -> None:
    raise KeyError(message)


class Greeter:
    """A module-level class: its methods travel by name, as with ProcessPoolExecutor."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}"
