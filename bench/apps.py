"""The conveyor app the benchmark runs: ``bench.apps:app`` (store from CONVEYOR_URL), or
``make_app(url, namespace)`` for one store. Two tasks: a no-op, and one that returns its start
time."""

from __future__ import annotations

import time

import conveyor
from bench import bodies

NOOP = "bench.noop"
STAMP = "bench.stamp"


def make_app(url: str | None = None, namespace: str | None = None) -> conveyor.App:
    app = conveyor.App(url, namespace=namespace)

    @app.task(name=NOOP)
    def noop() -> None:
        return bodies.work()

    @app.task(name=STAMP)
    def stamp() -> float:
        return time.time()

    return app


app = make_app()
