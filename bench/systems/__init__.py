"""One module per system, imported only when asked for (a peer's package may be missing)."""

from __future__ import annotations

import importlib
from typing import cast

from bench.core import SystemModule

#: system name -> module; peers (celery, rq, dramatiq, huey) are added here
SYSTEMS = {
    "conveyor": "bench.systems.conveyor",
    "sqlite3": "bench.systems.sqlite3_raw",  # the yardstick: SQLite alone
}


def load(system: str) -> SystemModule:
    if system not in SYSTEMS:
        raise SystemExit(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")
    return cast(SystemModule, importlib.import_module(SYSTEMS[system]))
