"""Flask (and other WSGI apps): ``init_app(flask_app, app, url_prefix="/jobs")``.

Every job of ``app`` then runs inside ``flask_app.app_context()`` on the worker (through
``app.around_job``), so tasks use ``current_app``, Flask-SQLAlchemy's session and the
extensions as a view does; and the HTTP API and dashboard of ``app.asgi()`` are served under
``url_prefix`` inside the Flask app (ASGI run as WSGI by a2wsgi; ``pip install
'conveyor[flask,web]'``). Call it where both apps are defined, so the workers (which import
that module) get the app context too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from conveyor.app import App
from conveyor.context import JobContext
from conveyor.errors import ConfigurationError


def init_app(
    flask_app: Any,
    app: App,
    url_prefix: str | None = "/jobs",
    *,
    token: str | None = None,
    read_only: bool = False,
) -> None:
    """Run ``app``'s jobs in ``flask_app``'s app context, and serve its HTTP API and
    dashboard at ``url_prefix`` (None: only the app context)."""

    @contextlib.contextmanager
    def flask_context(ctx: JobContext) -> Iterator[None]:
        with flask_app.app_context():
            yield

    app.around_job(flask_context)
    flask_app.extensions["conveyor"] = app
    if url_prefix is None:
        return
    if not url_prefix.startswith("/") or url_prefix == "/":
        raise ConfigurationError(f"url_prefix must be a path like '/jobs', not {url_prefix!r}")
    flask_app.wsgi_app = _mounted(flask_app.wsgi_app, app, url_prefix.rstrip("/"), token, read_only)


def _mounted(wsgi_app: Any, app: App, prefix: str, token: str | None, read_only: bool) -> Any:
    try:
        from a2wsgi import ASGIMiddleware
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
    except ImportError as exc:
        raise ConfigurationError(
            f"serving the dashboard in Flask needs: pip install 'conveyor[flask,web]' ({exc})"
        ) from None
    asgi: Any = app.asgi(token, read_only=read_only)  # Starlette's types differ from a2wsgi's
    mounted: Any = ASGIMiddleware(asgi)
    return DispatcherMiddleware(wsgi_app, {prefix: mounted})


__all__ = ["init_app"]
