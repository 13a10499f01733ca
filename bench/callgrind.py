"""Counting CPU instructions with ``valgrind --tool=callgrind``, shared by
``bench.like --instructions`` and ``bench.delay_cost``: the process starts with instrumentation
off and ``callgrind_control`` switches it on and off around exactly what is measured."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prefix(outfile: Path) -> tuple[str, ...]:
    """The command line in front of a measured process."""
    return (
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={outfile}", "--dump-instr=no", "--quiet",
    )  # fmt: skip


def toggle(state: str, pids: list[int]) -> None:
    """Instrumentation "on" or "off" in each process."""
    for pid in pids:
        subprocess.run(
            ["callgrind_control", "-i", state, str(pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def totals(outfile: Path) -> int:
    """The instructions counted, over every file callgrind wrote (one per process)."""
    total = 0
    for path in outfile.parent.glob(outfile.name + "*"):
        match = re.search(r"^totals: (\d+)", path.read_text(), re.M)
        if match:
            total += int(match[1])
    return total


def handshake(command: list[str], label: str, *, others: tuple[int, ...] = (), wait: float) -> None:
    """Run a child under callgrind (``command``) that prints "ready", waits for a line, does
    the counted work, prints "done" and waits again: instrumentation is on in between, in it
    and in the ``others`` processes (by pid)."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    pids = [proc.pid, *others]
    for expected, state in (("ready", "on"), ("done", "off")):
        line = proc.stdout.readline().decode().strip()
        if line != expected:
            proc.kill()
            raise RuntimeError(f"{label}: expected {expected!r}, got {line!r}")
        toggle(state, pids)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    proc.stdin.close()
    proc.wait(wait)
