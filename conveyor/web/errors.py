"""The one exception type of the web face, and the handlers that render it.

Every malformed request raises ``HTTPError`` with a 4xx status; the handlers turn it into
``{"error": {"code", "message"}}`` (or a small HTML page for the dashboard). A store that
cannot be reached is a 503; nothing a client sends can make a 500.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import (
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    InvalidArgument,
    JobNotFound,
    SerializationError,
    TaskNotFound,
)
from conveyor.web.shapes import PAGE_HEADERS, JSONResponse, route_path

log = logging.getLogger("conveyor.web")

#: the codes Starlette's own errors (unknown route, wrong method) get
_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class HTTPError(Exception):
    """A request the server cannot serve as asked: ``status`` (4xx, or 503), a short
    machine-readable ``code`` and a message that says what is wrong."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def bad_request(message: str) -> HTTPError:
    return HTTPError(400, "bad_request", message)


def not_found(message: str) -> HTTPError:
    return HTTPError(404, "not_found", message)


def conflict(message: str) -> HTTPError:
    return HTTPError(409, "conflict", message)


def _wants_html(request: Request) -> bool:
    path = route_path(request.scope)
    if path.startswith("/api/") or path in ("/metrics", "/healthz", "/openapi.json"):
        return False
    return "text/html" in request.headers.get("accept", "")


def render(request: Request, exc: HTTPError) -> Response:
    if _wants_html(request):
        templates = request.app.state.templates
        return templates.TemplateResponse(  # type: ignore[no-any-return]
            request,
            "error.html",
            {
                "status": exc.status,
                "code": exc.code,
                "message": exc.message,
                "base": request.scope.get("root_path", ""),
                "csrf": request.app.state.keys.csrf,
            },
            status_code=exc.status,
            headers={**PAGE_HEADERS, **(exc.headers or {})},
        )
    body = {"error": {"code": exc.code, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return render(request, exc)


async def handle_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STARLETTE_CODES.get(exc.status_code, "bad_request")
    headers = dict(exc.headers) if exc.headers else None
    return render(request, HTTPError(exc.status_code, code, str(exc.detail), headers=headers))


async def handle_conveyor_error(request: Request, exc: Exception) -> Response:
    """Errors of the app's calls: an unknown job is a 404, a wrong option a 400, a store
    that does not answer a 503."""
    if isinstance(exc, JobNotFound | TaskNotFound):
        return render(request, not_found(str(exc)))
    if isinstance(exc, BackendUnavailable):
        return render(request, HTTPError(503, "unavailable", str(exc)))
    if isinstance(exc, InvalidArgument | ConfigurationError | SerializationError):
        return render(request, bad_request(str(exc)))
    return await handle_unexpected(request, exc)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else comes from the store or its driver (a closed connection, a locked
    database): the request was fine, the backend was not, so 503 and a log line."""
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"the job store failed: {type(exc).__name__}: {exc}"
    return render(request, HTTPError(503, "unavailable", message))


HANDLERS: dict[Any, Any] = {
    HTTPError: handle_http_error,
    HTTPException: handle_starlette_error,
    ConveyorError: handle_conveyor_error,
    sqlite3.Error: handle_unexpected,
    OSError: handle_unexpected,
    Exception: handle_unexpected,
}
