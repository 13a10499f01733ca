"""Several processes claiming from one store at once, for the backends' own tests: each
process claims until the queues are empty, and the test gets every id any of them claimed."""

from __future__ import annotations

import json
import subprocess
import sys

CLAIMER = """
import json, sys
from conveyor.backends import open_backend
backend = open_backend(sys.argv[1], namespace=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
got = []
while claims := backend.claim(
    sys.argv[3], ["default", "other"], 7, lease_seconds=60, now=float(sys.argv[4])
):
    got += [c.record.id for c in claims]
print(json.dumps(got), flush=True)
backend.close()
"""


def claim_in_processes(url: str, namespace: str, *, now: float, processes: int = 4) -> list[str]:
    """Start the processes, let them connect, then let them race; every id claimed."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, namespace, f"w{n}", repr(now)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:  # all connected: let them race
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    claimed: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        claimed += json.loads(out.strip().splitlines()[-1])
    return claimed
