"""The dashboard in a real browser: Playwright driving Debian's chromium (never a browser
Playwright downloads), against a real uvicorn server, a worker, and a token."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.app import App
from conveyor.web.asgi import build
from tests.web.conftest import TOKEN, Server, make_app, serve, wait_for, wait_state

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def browser_app(tmp_path: Path, namespace: str) -> Iterator[App]:
    a = make_app(f"sqlite:///{tmp_path}/jobs.db", namespace)
    yield a
    a.close()


@pytest.fixture
def site(browser_app: App) -> Iterator[Server]:
    yield from serve(build(browser_app, token=TOKEN, heartbeat_seconds=1.0))


@pytest.fixture
def running(browser_app: App) -> Iterator[Any]:
    w = browser_app.worker(concurrency=4, lease_seconds=5.0, shutdown_timeout=5.0)
    w.start()
    yield w
    w.stop(timeout=10)


@pytest.fixture
def page(browser: Any, site: Server) -> Iterator[Any]:
    # CSP would stop Playwright's own evaluated predicates; off here, so escaping alone is tested
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    p = context.new_page()
    p.set_default_timeout(15_000)
    p.goto(f"{site.url}/login")
    p.fill("input[name=token]", TOKEN)
    p.click("button:has-text('Log in')")
    p.wait_for_url(f"{site.url}/")
    yield p
    context.close()


def test_logging_in_with_the_token(browser: Any, site: Server) -> None:
    context = browser.new_context()
    p = context.new_page()
    p.goto(f"{site.url}/workers")
    assert "/login" in p.url
    p.fill("input[name=token]", "wrong")
    p.click("button:has-text('Log in')")
    assert p.locator(".notice.bad").is_visible()
    p.fill("input[name=token]", TOKEN)
    p.click("button:has-text('Log in')")
    p.wait_for_url(f"{site.url}/workers")
    assert p.locator("h1").inner_text() == "Workers"
    context.close()


def test_list_and_filter(browser_app: App, page: Any, site: Server) -> None:
    add, boom = browser_app.registry.get("add"), browser_app.registry.get("boom")
    ids = [add.delay(i, i).id for i in range(3)]
    other = boom.delay("x").id
    page.goto(f"{site.url}/")
    assert page.locator("tr[data-job]").count() == 4
    page.fill("input[name=task]", "boom")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**task=boom**")
    assert page.locator("tr[data-job]").count() == 1
    assert page.locator(f"tr[data-job='{other}']").is_visible()
    assert page.locator(f"tr[data-job='{ids[0]}']").count() == 0


def test_open_a_failed_job_and_retry_it(
    browser_app: App, page: Any, site: Server, running: Any
) -> None:
    job = browser_app.registry.get("boom").delay("kaputt")
    wait_state(browser_app, job.id, "failed")
    page.goto(f"{site.url}/?state=failed")
    page.click(f"tr[data-job='{job.id}'] td.id a")
    page.wait_for_url(f"**/jobs/{job.id}")
    assert "kaputt" in page.locator(".error-box").inner_text()
    assert "Traceback" in page.locator("pre.tb").inner_text()
    page.click("button:has-text('Retry')")
    # the worker runs it again and it fails again: attempts went up
    wait_for(lambda: browser_app.job(job.id).info().attempts == 2)
    wait_state(browser_app, job.id, "failed")


def test_cancel_a_running_job(browser_app: App, page: Any, site: Server, running: Any) -> None:
    job = browser_app.registry.get("hold").delay(60)
    wait_state(browser_app, job.id, "running")
    page.goto(f"{site.url}/jobs/{job.id}")
    assert page.locator("[data-state]").inner_text() == "running"
    page.click("button:has-text('Cancel')")
    wait_state(browser_app, job.id, "cancelled")
    page.wait_for_function("document.querySelector('[data-state]').textContent === 'cancelled'")


def test_progress_moves_without_reloading(
    browser_app: App, page: Any, site: Server, running: Any
) -> None:
    job = browser_app.registry.get("steps").apply_async((8,), {"pause": 0.4}, countdown=1.0)
    page.goto(f"{site.url}/jobs/{job.id}")
    page.evaluate("window.__same_page = true")
    page.wait_for_function(
        "Number(document.querySelector('[data-pct]').textContent.replace('%','')) >= 25"
    )
    first = page.locator("[data-pct]").inner_text()
    page.wait_for_function(
        f"document.querySelector('[data-pct]').textContent !== {first!r} && "
        "document.querySelector('[data-state]').textContent === 'running'"
    )
    assert page.evaluate("window.__same_page") is True  # moved with no reload
    assert "step" in page.locator("[data-msg]").inner_text()
    # once final the page shows the result
    page.wait_for_selector("#result", timeout=30_000)


def test_a_script_in_a_jobs_arguments_is_text_and_never_runs(
    browser_app: App, page: Any, site: Server
) -> None:
    payload = "<script>window.__xss = 1</script><img src=x onerror='window.__xss = 2'>"
    job = browser_app.registry.get("echo").apply_async((payload,), {"note": payload})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for path in ("/", f"/jobs/{job.id}"):
        page.goto(f"{site.url}{path}")
        page.wait_for_timeout(300)
        assert page.evaluate("window.__xss") is None
    assert payload in page.locator("#args").inner_text()
    assert not dialogs
