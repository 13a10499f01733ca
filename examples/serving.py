"""What the FastAPI examples' one command does: a ``conveyor worker`` process beside the API,
served by uvicorn on 127.0.0.1 ($PORT, else 8000); the worker stops with the server."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any


def serve_with_worker(api: Any, worker_args: list[str]) -> int:
    import uvicorn

    worker = subprocess.Popen([sys.executable, "-m", "conveyor", *worker_args])
    try:
        uvicorn.run(api, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
    finally:
        worker.terminate()
        worker.wait(60)
    return 0
