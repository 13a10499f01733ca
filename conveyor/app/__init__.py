"""The app, ``App``: one class, put together from a mixin per concern (core.py is the
composition root; the others are what it offers), so that no module outgrows one reading."""

from conveyor.app.core import App
from conveyor.app.enqueue import LIVE_WORKER_SECONDS, AroundEnqueue

__all__ = ["LIVE_WORKER_SECONDS", "App", "AroundEnqueue"]
