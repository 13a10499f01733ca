"""A process that submits work to ``app.executor()`` and then waits forever: the kill -9
test kills it while its embedded worker runs the first calls."""

from __future__ import annotations

import sys
import time

from tests.executor.work import app, square_slowly

if __name__ == "__main__":
    count, marker_dir = int(sys.argv[1]), sys.argv[2]
    executor = app.executor(max_workers=2, lease_seconds=1.0)
    futures = [executor.submit(square_slowly, i, marker_dir, 1.0) for i in range(count)]
    for future in futures:
        print(future.job.id, flush=True)
    while True:
        time.sleep(1)
