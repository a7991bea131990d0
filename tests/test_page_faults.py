"""The page in real Chromium through faults that need a Reflex app instance of their own.

The Reflex backend restarting mid-job (the page must reconnect and follow the job again without a
reload), and the per-browser limit on unfinished jobs across tabs.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from rxapp.components.outage import OUTAGE_TEXT
from rxapp.session import COOKIE_NAME
from settings import Settings, load_settings
from stack.processes import Child
from tasks import service
from tasks.clients import Clients
from tasks.model import JobNotFound, ServiceUnavailable
from tasks.progress import snapshot_key
from tests.browser import TIMEOUT_S, JobPage, parse_step
from tests.conftest import Restartable, WebApp, wait_finished, wait_for
from tests.test_page import BIG_N, cancel_on_page

pytestmark = pytest.mark.browser

# Another database than the session `web` fixture's (14), for the Redis state manager's states.
REFLEX_STATE_DB = 12


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class OwnApp(WebApp):
    """`reflex run` with its own ports, web folder, log and extra settings; it can be restarted."""

    def __init__(self, name: str, port_offset: int, **extra: str) -> None:
        base = load_settings(os.environ)
        frontend_port, backend_port = base.frontend_port + port_offset, base.backend_port + port_offset
        env = {
            "FRONTEND_PORT": str(frontend_port),
            "BACKEND_PORT": str(backend_port),
            "API_URL": f"http://localhost:{backend_port}",
            # Not the session `web` fixture's folder: both may be up in one pytest session.
            "REFLEX_WEB_WORKDIR": f"{os.environ.get('REFLEX_WEB_WORKDIR', '.web')}-faults",
            **extra,
        }
        settings = load_settings({**os.environ, **env})
        super().__init__(settings, env)
        self.ports = (frontend_port, backend_port)
        self.log_path = settings.run_dir / "logs" / f"web-faults-{name}.log"

    def stop(self) -> None:
        """Stop the whole process group; its ports are free when this returns (or the test fails)."""
        super().stop()
        self.child = None
        # A port still taken at the next start would make `reflex run` pick another one.
        wait_for(lambda: not any(port_open(port) for port in self.ports), TIMEOUT_S, "the app's ports to be free")

    def exceptions(self, since: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(since)
            new = log.read().decode(errors="replace")
        return new[-4000:] if "Backend Exception" in new else ""


@pytest.fixture
def own_app() -> Iterator[Callable[..., OwnApp]]:
    """Start this test's app instance; it is stopped at the end, and the test fails if it logged an
    exception meanwhile."""
    started: list[tuple[OwnApp, int]] = []

    def start(name: str, port_offset: int, **extra: str) -> OwnApp:
        app = OwnApp(name, port_offset, **extra)
        app.log_path.parent.mkdir(parents=True, exist_ok=True)
        app.log_path.touch()
        started.append((app, app.log_path.stat().st_size))
        app.start()
        return app

    yield start
    for app, _ in started:
        app.stop()
    for app, since in started:
        assert not app.exceptions(since), app.exceptions(since)


@pytest.fixture
def open_page(browser: Browser, c: Clients) -> Iterator[Callable[..., JobPage]]:
    """Open the app's `/` in a tab of a new context (or of `context`); jobs left unfinished are
    cancelled at the end (before the test's worker stops, when the test names the worker before
    this fixture)."""
    contexts: list[BrowserContext] = []
    pages: list[JobPage] = []

    def open_(app: WebApp, context: BrowserContext | None = None) -> JobPage:
        if context is None:
            context = browser.new_context(viewport={"width": 1000, "height": 800})
        context.set_default_timeout(TIMEOUT_S * 1000)
        contexts.append(context)  # closing one twice is harmless
        tab = context.new_page()
        # Vite's client in the page reloads it when the dev server comes back after a restart (even
        # with VITE_HMR=false); a production frontend is static files and does not. Its socket is
        # answered in the browser instead, so the page only sees the Reflex backend go and return.
        tab.route_web_socket(re.compile(rf"^wss?://localhost:{app.frontend.rsplit(':', 1)[1]}/"), lambda ws: None)
        page = JobPage(tab, app.frontend + "/")
        pages.append(page)
        return page.open()

    yield open_
    for context in contexts:
        context.close()
    left = set()
    for job_id in {job_id for page in pages for job_id in page.submitted}:
        with contextlib.suppress(JobNotFound):  # a job of a test's own Redis is not known to this one
            service.cancel_job(job_id, c)
            left.add(job_id)
    for job_id in left:
        wait_finished(c, job_id, timeout_s=TIMEOUT_S)


def snapshot_keys(c: Clients) -> set[str]:
    return {key.decode() for key in c.redis.scan_iter("jobstream:job:*", count=1000)}


@pytest.mark.parametrize("state_manager", ["memory", "redis"])
def test_page_follows_its_job_across_an_app_restart(
    state_manager: str,
    worker: Child,
    own_app: Callable[..., OwnApp],
    open_page: Callable[[WebApp], JobPage],
    settings: Settings,
    c: Clients,
) -> None:
    extra = {}
    if state_manager == "redis":
        extra["REFLEX_REDIS_URL"] = f"{settings.redis_url.rsplit('/', 1)[0]}/{REFLEX_STATE_DB}"
    app = own_app(f"restart-{state_manager}", 10, **extra)
    page = open_page(app)
    # Lives only as long as the document: a reload drops it.
    page.page.evaluate("window.__notReloaded = true")
    job_id = page.submit(BIG_N)
    page.wait_running(job_id, min_step=100)

    app.stop()
    # The page notices, and says so plainly (no address, no socket error).
    notice = page.page.get_by_test_id("connection-lost")
    expect(notice).to_have_text(OUTAGE_TEXT)
    text = page.page.locator("body").inner_text()
    assert urlsplit(app.backend).netloc not in text
    assert "ws://" not in text
    frozen = page.step_text(job_id).inner_text()

    app.start()
    # The same page reconnects by itself, shows the job again and follows it live.
    expect(notice).to_have_count(0)
    seen = page.wait_step_change(job_id, frozen)
    later = page.wait_step_change(job_id, seen)
    assert parse_step(later)[0] > parse_step(seen)[0]
    cancel_on_page(page, job_id, c)
    assert page.card_ids() == [job_id]
    assert page.page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    page.assert_clean()


def test_the_limit_on_unfinished_jobs_holds_across_tabs_and_every_accepted_job_comes_back(
    browser: Browser,
    start_worker: Callable[..., Child],
    own_app: Callable[..., OwnApp],
    open_page: Callable[..., JobPage],
    c: Clients,
) -> None:
    # No worker yet: the jobs stay queued (unfinished) and the pages stay still.
    app = own_app("limit", 20, MAX_UNFINISHED_JOBS="2")
    left = open_page(app)
    context = left.page.context
    right = open_page(app, context)  # a second tab of the same browser
    first = left.submit(100)
    second = right.submit(100)
    keys = snapshot_keys(c)
    assert {snapshot_key(first), snapshot_key(second)} <= keys

    # Each tab shows one job, yet the browser holds two: neither tab may start a third.
    refused = "At most 2 unfinished jobs each (MAX_UNFINISHED_JOBS): wait for one to finish or cancel one."
    for tab in (left, right):
        tab.type_n("100")
        expect(tab.page.get_by_test_id("job-error")).to_have_text(refused)
    assert (left.card_ids(), right.card_ids()) == ([first], [second])
    assert snapshot_keys(c) == keys
    # The browser's one cookie is its session: HttpOnly (no script reads it), SameSite=Lax, no job ids.
    (session,) = context.cookies()
    assert (session["name"], session["httpOnly"], session["sameSite"]) == (COOKIE_NAME, True, "Lax")
    assert first not in session["value"]
    assert second not in session["value"]
    assert left.page.evaluate("document.cookie") == ""

    # A job cancelled in one tab frees its place for the other.
    left.card(first).get_by_test_id("job-cancel").click()
    left.wait_status(first, "cancelled", timeout_s=TIMEOUT_S)
    third = right.submit(100)
    expect(right.page.get_by_test_id("job-error")).to_have_count(0)
    left.type_n("100")
    expect(left.page.get_by_test_id("job-error")).to_have_text(refused)
    assert snapshot_keys(c) - keys == {snapshot_key(third)}

    # The browser is closed with both tabs and opened again: every accepted job comes back.
    for tab in (left, right):
        tab.assert_clean()
    cookies = context.cookies()
    context.close()
    reopened = browser.new_context(viewport={"width": 1000, "height": 800})
    reopened.add_cookies(cookies)  # type: ignore[arg-type]
    later = open_page(app, reopened)
    expect(later.cards).to_have_count(2)
    assert later.card_ids() == [third, second]
    # A browser without that cookie is someone else: none of them, and its own limit.
    stranger = open_page(app, browser.new_context(viewport={"width": 1000, "height": 800}))
    stranger.submit(100)
    expect(stranger.cards).to_have_count(1)
    again = open_page(app, reopened)  # a second tab of the reopened browser
    expect(again.cards).to_have_count(2)
    assert again.card_ids() == [third, second]
    again.type_n("100")
    expect(again.page.get_by_test_id("job-error")).to_have_text(refused)

    start_worker("w")
    for page in (later, again):
        page.wait_status(third, "succeeded")
        page.wait_status(second, "succeeded")
        expect(page.step_text(third)).to_have_text("100/100")
        page.assert_clean()


def test_a_cancel_while_redis_is_down_says_so_plainly_and_loses_nothing(
    own_redis: tuple[Restartable, Settings],
    start_worker: Callable[..., Child],
    own_app: Callable[..., OwnApp],
    open_page: Callable[..., JobPage],
) -> None:
    server, own = own_redis
    start_worker("outage", REDIS_URL=own.redis_url)
    page = open_page(own_app("outage", 30, REDIS_URL=own.redis_url))
    job_id = page.submit(BIG_N)
    page.wait_running(job_id, min_step=50)

    server.stop()
    page.card(job_id).get_by_test_id("job-cancel").click()
    error = page.page.get_by_test_id("job-error")
    expect(error).to_have_text(str(ServiceUnavailable()))
    # Nothing lost: the card is still there, running.
    expect(page.status(job_id)).to_have_text("running")

    server.start()  # empty: the job's next publish writes its snapshot again
    page.card(job_id).get_by_test_id("job-cancel").click()
    page.wait_status(job_id, "cancelled", timeout_s=TIMEOUT_S)
    expect(error).to_have_count(0)
    cancelled = wait_finished(Clients(own), job_id, timeout_s=TIMEOUT_S)
    expect(page.step_text(job_id)).to_have_text(f"{cancelled.step:,}/{BIG_N:,}")
    page.assert_clean()
