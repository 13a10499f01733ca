"""``app.asgi()``: the Starlette application of the HTTP API, the dashboard and /metrics.

Building it does no I/O (no connection, no file read beyond the package's templates, which
load lazily), so a FastAPI app may mount it at import time."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from conveyor.web import api, dashboard, metrics, openapi, sse
from conveyor.web.auth import Guard, Keys
from conveyor.web.errors import HANDLERS
from conveyor.web.protocol import WebApp


def build(
    app: WebApp,
    *,
    token: str | None = None,
    read_only: bool = False,
    heartbeat_seconds: float = 10.0,
) -> Starlette:
    """The web face of ``app``. ``token`` None means no authentication (serve on loopback
    only); ``read_only`` refuses every state-changing request with 403."""
    keys = Keys(token or None)
    routes = [
        *api.routes,
        *sse.routes,
        *metrics.routes,
        *openapi.routes,
        *dashboard.routes,
        Mount("/static", StaticFiles(packages=[("conveyor.web", "static")]), name="static"),
    ]
    web = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, keys=keys, read_only=read_only)],
        exception_handlers=HANDLERS,
    )
    web.state.conveyor = app
    web.state.keys = keys
    web.state.read_only = read_only
    web.state.heartbeat_seconds = heartbeat_seconds
    web.state.templates = dashboard.make_templates()
    web.state.metrics = metrics.registry_for(app)
    web.state.openapi = openapi.document()
    return web
