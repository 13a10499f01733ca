"""The web face: the HTTP API, live events, /metrics and the dashboard (``app.asgi()``).

Needs the ``web`` extra: ``pip install 'conveyor[web]'``."""
