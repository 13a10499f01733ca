"""Who may do what: the token, the login cookie, CSRF, read-only mode and the body limit.

With a token, every route but ``/healthz`` (and the login page and static assets) needs
``Authorization: Bearer <token>`` or the login cookie. The cookie holds an HMAC of the token,
never the token; it is HttpOnly and SameSite=Strict. A state-changing request made with the
cookie needs the CSRF token as well (the ``X-CSRF-Token`` header, or the ``csrf`` field of the
dashboard's forms, checked by the form endpoints): an HMAC bound to the token, so every
replica of the web app agrees on it. Without a token (loopback only) the dashboard's forms
still carry a CSRF token, and cross-site state-changing requests are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.web.errors import HTTPError
from conveyor.web.shapes import JSONResponse, route_path

MAX_BODY_BYTES = 16 * 1024 * 1024
COOKIE = "conveyor_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: reachable without credentials: the health check, the login form, the stylesheet and script
OPEN_PATHS = ("/healthz", "/login", "/static/")


class Keys:
    """The secrets derived from the token (or, without one, from a random key of this
    process): what the login cookie and the CSRF token hold."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        base = token.encode() if token else secrets.token_bytes(32)
        self.session = _derive(base, "session")
        self.csrf = _derive(base, "csrf")

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def session_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.session.encode())

    def csrf_matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.csrf.encode())


def _derive(key: bytes, purpose: str) -> str:
    return hmac.new(key, f"conveyor:{purpose}".encode(), hashlib.sha256).hexdigest()


def _bearer(headers: Headers) -> str | None:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


class Guard:
    """ASGI middleware in front of every route (plain ASGI, so streams pass through)."""

    def __init__(self, app: ASGIApp, *, keys: Keys, read_only: bool) -> None:
        self.app = app
        self.keys = keys
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.check(scope)
        except HTTPError as exc:
            await self.refuse(scope, exc)(scope, receive, send)
            return
        await self.app(scope, _limited(scope, receive), send)

    def check(self, scope: Scope) -> None:
        headers = Headers(scope=scope)
        path, method = route_path(scope), scope["method"]
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise too_large()
        changes = method not in SAFE_METHODS and path not in ("/login", "/logout")
        if changes and self.read_only:
            raise HTTPError(403, "read_only", "this server is read-only: it changes nothing")
        if changes and headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            raise HTTPError(
                403, "cross_site", "refused: a state-changing request from another site"
            )
        if self.keys.token is None or path.startswith(OPEN_PATHS):
            scope.setdefault("state", {})["auth"] = "open"
            return
        bearer = _bearer(headers)
        if bearer is not None:
            if not self.keys.token_matches(bearer):
                raise unauthorized("the bearer token is wrong")
            scope.setdefault("state", {})["auth"] = "bearer"
            return
        cookie = HTTPConnection(scope).cookies.get(COOKIE)
        if not self.keys.session_matches(cookie):
            raise unauthorized("this server needs a token: send Authorization: Bearer <token>")
        scope.setdefault("state", {})["auth"] = "cookie"
        # forms carry their CSRF token in the body, checked by the form endpoints
        if (
            changes
            and path.startswith("/api/")
            and not self.keys.csrf_matches(headers.get(CSRF_HEADER))
        ):
            raise HTTPError(403, "csrf", "a request made with the login cookie needs X-CSRF-Token")

    def refuse(self, scope: Scope, exc: HTTPError) -> Response:
        path = route_path(scope)
        headers = Headers(scope=scope)
        if exc.status == 401 and scope["method"] == "GET" and _is_page(path, headers):
            root = scope.get("root_path", "")
            target = scope.get("path", "/")
            return RedirectResponse(f"{root}/login?next={_quote(target)}", status_code=303)
        body = {"error": {"code": exc.code, "message": exc.message}}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _is_page(path: str, headers: Headers) -> bool:
    return (
        not path.startswith("/api/")
        and path != "/metrics"
        and "text/html" in headers.get("accept", "")
    )


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def unauthorized(message: str) -> HTTPError:
    return HTTPError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def too_large() -> HTTPError:
    return HTTPError(413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")


def _limited(scope: Scope, receive: Receive) -> Receive:
    """``receive`` that refuses a body (chunked or lying about its length) past the limit."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise too_large()
        return message

    return receive_limited


def csrf_ok(connection: HTTPConnection, given: Any) -> bool:
    keys: Keys = connection.app.state.keys
    return keys.csrf_matches(given)


def safe_next(raw: str | None, root: str) -> str:
    """Where to go after logging in: only a path of this site (never //host or a scheme)."""
    # browsers drop tabs and newlines from URLs ("/\t/evil" becomes "//evil"): refuse them
    plain = raw is not None and all(c.isprintable() and not c.isspace() for c in raw)
    if raw and plain and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return f"{root}/"
