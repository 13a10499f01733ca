"""The dashboard: server-rendered pages over the same inspection calls as the API, and the
forms of its actions (retry, cancel, purge, retry all failed), which answer with a redirect
so they work without JavaScript. A little script (static/live.js) makes pages live."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from conveyor import wire
from conveyor.job import JobInfo, State, to_datetime
from conveyor.web import shapes
from conveyor.web.api import change_job, job_or_404, list_page, retry_failed, the_app
from conveyor.web.auth import COOKIE, csrf_ok, safe_next
from conveyor.web.charts import SAMPLE, throughput_chart
from conveyor.web.errors import HTTPError
from conveyor.web.protocol import WebApp


def make_templates() -> Jinja2Templates:
    env = Environment(
        loader=PackageLoader("conveyor.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = ago
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.filters["duration"] = duration
    env.filters["seconds"] = seconds
    return Jinja2Templates(env=env)


# -- filters (formatting only) -------------------------------------------------------------


def when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = time.time() - value.timestamp()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f}s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 86400:
        text = f"{seconds / 3600:.0f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


def seconds(value: float) -> str:
    """A period as people write it: 30 s, 5 min, 1 h, 1 d, or 1 h 30 min."""
    total = round(value)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size} {unit}")
            total %= size
    return " ".join(parts) or f"{value:g} s"


def duration(info: JobInfo) -> str:
    if info.started_at is None:
        return ""
    end = info.finished_at.timestamp() if info.finished_at else time.time()
    seconds = max(0.0, end - info.started_at.timestamp())
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def pretty(value: Any) -> str:
    """JSON on one line when it is short, indented when it is not."""
    plain = wire.plain(value)
    line = json.dumps(plain, ensure_ascii=False)
    return line if len(line) <= 100 else json.dumps(plain, indent=2, ensure_ascii=False)


# -- pages ---------------------------------------------------------------------------------


def page(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    keys = request.app.state.keys
    base = request.scope.get("root_path", "")
    common = {
        "base": base,
        "csrf": keys.csrf,
        "read_only": request.app.state.read_only,
        "logged_in": request.scope.get("state", {}).get("auth") == "cookie",
        "states": [s.value for s in State],
    }
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, template, {**common, **context}, status_code=status, headers=shapes.PAGE_HEADERS
    )


def _totals(counts: Mapping[str, Mapping[State, int]]) -> dict[str, int]:
    totals = dict.fromkeys((s.value for s in State), 0)
    for by_state in counts.values():
        for state, n in by_state.items():
            totals[State(state).value] += n
    return totals


def jobs_page(request: Request) -> Response:
    app, params = the_app(request), request.query_params
    wanted = (params.get("id") or "").strip()
    if wanted:
        try:
            job_or_404(app, wanted)
        except HTTPError:
            return page(request, "jobs.html", _jobs_context(request, found=False), status=404)
        return RedirectResponse(
            f"{request.scope.get('root_path', '')}/jobs/{wanted}", status_code=303
        )
    return page(request, "jobs.html", _jobs_context(request, found=True))


def _jobs_context(request: Request, *, found: bool) -> dict[str, Any]:
    app, params = the_app(request), request.query_params
    # the filter form sends its empty fields too: an empty one filters nothing
    chosen = {k: v for k, v in params.items() if v and k != "id"}
    result = list_page(app, chosen) if found else None
    filters = {k: params.get(k, "") for k in ("state", "task", "queue")}
    active = {k: v for k, v in filters.items() if v}
    limit = params.get("limit")
    if limit:
        active["limit"] = limit
    next_url = None
    if result is not None and result.next_cursor:
        next_url = "?" + urlencode({**active, "cursor": result.next_cursor})
    counts = app.queues()
    return {
        "jobs": [] if result is None else result.items,
        "filters": filters,
        "search": params.get("id", ""),
        "not_found": not found,
        "next_url": next_url,
        "first_url": ("?" + urlencode(active)) if params.get("cursor") else None,
        "totals": _totals(counts),
        "chart": _chart(app),
        "nav": "jobs",
    }


def _chart(app: WebApp) -> dict[str, Any]:
    succeeded = app.jobs(state=State.SUCCEEDED, limit=SAMPLE).items
    failed = app.jobs(state=State.FAILED, limit=SAMPLE).items
    return throughput_chart(succeeded, failed, time.time())


def job_page(request: Request) -> Response:
    info = job_or_404(the_app(request), request.path_params["id"])
    return page(request, "job.html", {"job": info, "nav": "jobs"})


def queues_page(request: Request) -> Response:
    items = shapes.queues_json(the_app(request).queues())
    return page(request, "queues.html", {"queues": items, "nav": "queues"})


def workers_page(request: Request) -> Response:
    now = time.time()
    items = []
    for worker in the_app(request).workers():
        item = shapes.worker_json(worker, now)
        item["last_seen_ago"] = ago(to_datetime(worker.last_seen))
        items.append(item)
    items.sort(key=lambda w: (not w["alive"], w["host"], w["pid"]))
    return page(request, "workers.html", {"workers": items, "nav": "workers"})


def schedules_page(request: Request) -> Response:
    items = list(the_app(request).schedules())
    return page(request, "schedules.html", {"schedules": items, "nav": "schedules"})


# -- login ---------------------------------------------------------------------------------


def limits_page(request: Request) -> Response:
    items = list(the_app(request).limits())
    return page(request, "limits.html", {"limits": items, "nav": "limits"})


def login_page(request: Request) -> Response:
    if request.app.state.keys.token is None:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)
    return page(
        request, "login.html", {"next": request.query_params.get("next", ""), "wrong": False}
    )


async def login(request: Request) -> Response:
    keys = request.app.state.keys
    form = await request.form()
    root = request.scope.get("root_path", "")
    given = form.get("token")
    if keys.token is None or not isinstance(given, str) or not keys.token_matches(given):
        return page(
            request, "login.html", {"next": form.get("next", ""), "wrong": True}, status=401
        )
    response = RedirectResponse(safe_next(_text(form.get("next")), root), status_code=303)
    response.set_cookie(
        COOKIE,
        keys.session,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=f"{root}/",
    )
    return response


async def logout(request: Request) -> Response:
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}/login", status_code=303)
    response.delete_cookie(COOKIE, path=f"{root}/")
    return response


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- actions -------------------------------------------------------------------------------


async def _checked_form(request: Request) -> FormData:
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        raise HTTPError(403, "csrf", "the form's CSRF token is missing or wrong: reload the page")
    return form


def _back(request: Request, form: FormData, default: str) -> Response:
    root = request.scope.get("root_path", "")
    target = safe_next(_text(form.get("next")), root) if form.get("next") else f"{root}{default}"
    return RedirectResponse(target, status_code=303)


async def _act(request: Request, action: Literal["cancel", "retry"]) -> Response:
    form = await _checked_form(request)
    job_id = request.path_params["id"]
    await run_in_threadpool(change_job, the_app(request), job_id, action)
    return _back(request, form, f"/jobs/{job_id}")


async def retry_action(request: Request) -> Response:
    return await _act(request, "retry")


async def cancel_action(request: Request) -> Response:
    return await _act(request, "cancel")


async def purge_action(request: Request) -> Response:
    form = await _checked_form(request)
    await run_in_threadpool(the_app(request).purge, request.path_params["name"])
    return _back(request, form, "/queues")


async def retry_failed_action(request: Request) -> Response:
    form = await _checked_form(request)
    await run_in_threadpool(retry_failed, the_app(request))
    return _back(request, form, "/?state=failed")


def _routes() -> Iterable[Route]:
    yield Route("/", jobs_page, methods=["GET"])
    yield Route("/jobs/{id}", job_page, methods=["GET"])
    yield Route("/queues", queues_page, methods=["GET"])
    yield Route("/workers", workers_page, methods=["GET"])
    yield Route("/schedules", schedules_page, methods=["GET"])
    yield Route("/limits", limits_page, methods=["GET"])
    yield Route("/login", login_page, methods=["GET"])
    yield Route("/login", login, methods=["POST"])
    yield Route("/logout", logout, methods=["POST"])
    yield Route("/jobs/{id}/retry", retry_action, methods=["POST"])
    yield Route("/jobs/{id}/cancel", cancel_action, methods=["POST"])
    yield Route("/queues/{name}/purge", purge_action, methods=["POST"])
    yield Route("/retry-failed", retry_failed_action, methods=["POST"])


routes = list(_routes())
