"""One module per system, imported only when asked for (a peer's package may be missing)."""

from __future__ import annotations

import importlib
from typing import cast

from bench.core import SystemModule

#: system name -> module, in the order the runner takes them (conveyor, peers, yardsticks)
SYSTEMS = {
    "conveyor": "bench.systems.conveyor",
    "celery": "bench.systems.celery_peer",
    "dramatiq": "bench.systems.dramatiq_peer",
    "huey": "bench.systems.huey_peer",
    "rq": "bench.systems.rq_peer",
    "redis-py": "bench.systems.redis_raw",  # the yardstick: Redis alone
    "sqlite3": "bench.systems.sqlite3_raw",  # the yardstick: SQLite alone
    # bench.like only (the main bench starts no PostgreSQL; bench.pg compares them there):
    # the targets of all three, and the peers' workers
    "postgres": "bench.systems.postgres",
    "procrastinate": "bench.systems.postgres",
    "pgqueuer": "bench.systems.postgres",
}
#: the names above that bench.like alone runs
POSTGRES = ("postgres", "procrastinate", "pgqueuer")
#: the systems conveyor is compared with
PEERS = ("celery", "dramatiq", "huey", "rq")


def load(system: str) -> SystemModule:
    if system not in SYSTEMS:
        raise SystemExit(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")
    return cast(SystemModule, importlib.import_module(SYSTEMS[system]))
