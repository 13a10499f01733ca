"""A benchmark worker process: ``python -m bench.worker '{"system": ..., "spec": ...,
"concurrency": N, "body": ..., "body_url": ...}'``.

It prepares its system's worker, prints ``ready``, waits for ``go`` on stdin, then runs the
worker until SIGTERM. The runner starts the clock at ``go``.
"""

from __future__ import annotations

import json
import sys

from bench import bodies
from bench.systems import load


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    bodies.configure(request.get("body"), request.get("body_url"))
    module = load(request["system"])
    run = module.prepare_worker(request["spec"], int(request["concurrency"]))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
