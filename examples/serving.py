"""What the FastAPI examples' one command does: a ``conveyor worker`` process beside the API,
served by uvicorn on 127.0.0.1 ($PORT, else 8000); the worker stops with the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any


def serve_with_worker(api: Any, worker_args: list[str]) -> int:
    import uvicorn

    worker = subprocess.Popen([sys.executable, "-m", "conveyor", *worker_args])

    def stop_worker(signum: int | None = None, frame: object = None) -> None:
        if worker.poll() is None:
            worker.terminate()  # it finishes its running jobs, then exits
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
        if signum is not None:
            raise SystemExit(0)

    # uvicorn handles SIGTERM/SIGINT itself, then raises the signal again with the handler
    # that was there before it: ours, so the worker is stopped before this process ends.
    signal.signal(signal.SIGTERM, stop_worker)
    signal.signal(signal.SIGINT, stop_worker)
    try:
        uvicorn.run(api, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
    finally:
        stop_worker()
    return 0
