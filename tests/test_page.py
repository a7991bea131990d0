"""The page in real Chromium against the real app, worker, Redis and Kafka, with both state managers."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from playwright.sync_api import BrowserContext, expect

from bench.browser import OBSERVE_JS
from bench.pageclient import FINISHED
from rxapp.hub import RECONNECT_GRACE_S
from rxapp.session import COOKIE_NAME, MAX_AGE_S, cookie_value, owner_of_value
from settings import Settings
from stack.access import kept_secret
from tasks import service
from tasks.clients import Clients
from tasks.model import JobStatus
from tasks.progress import channel, snapshot_key
from tests.browser import TIMEOUT_S, JobPage, parse_step, swap_job_id
from tests.conftest import BOTH_STATE_MANAGERS, WebApp, wait_finished, wait_for

# Every test also fails when the app logged an exception while it ran.
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_backend_exceptions")]

BIG_N = 1_000_000  # runs for half an hour at 2 ms a step: cancelled by the test or at its end


def snapshot_keys(c: Clients) -> int:
    return sum(1 for _ in c.redis.scan_iter("jobstream:job:*", count=1000))


@BOTH_STATE_MANAGERS
def test_job_runs_live_to_success(open_page: Callable[..., JobPage], c: Clients) -> None:
    page = open_page()
    job_id = page.submit(1500)
    expect(page.status(job_id)).to_have_text(re.compile(r"^(queued|running)$"))

    page.wait_running(job_id)
    first = page.step_text(job_id).inner_text()
    second = page.wait_step_change(job_id, first)
    assert parse_step(second)[0] > parse_step(first)[0]

    page.wait_status(job_id, "succeeded")
    expect(page.step_text(job_id)).to_have_text("1,500/1,500")
    # The page stays open, but with its only job finished its watcher ends and stops listening.
    wait_for(lambda: subscribers(c, job_id) == 0, 10, "the watcher to end with its job")
    page.assert_clean()


def cancel_on_page(page: JobPage, job_id: str, c: Clients) -> None:
    """Cancel a running job from its card; the card ends on exactly the step the log ends on."""
    page.card(job_id).get_by_test_id("job-cancel").click()
    page.wait_status(job_id, "cancelled", timeout_s=TIMEOUT_S)
    state = wait_finished(c, job_id, timeout_s=TIMEOUT_S)
    assert state.status is JobStatus.CANCELLED
    expect(page.step_text(job_id)).to_have_text(f"{state.step:,}/{state.total:,}")


@BOTH_STATE_MANAGERS
def test_reload_recovers_the_running_job(open_page: Callable[..., JobPage], c: Clients) -> None:
    page = open_page()
    job_id = page.submit(BIG_N)
    page.wait_running(job_id, min_step=100)

    page.page.reload()
    page.wait_ready()
    expect(page.cards).to_have_count(1)
    seen = page.step_text(job_id).inner_text()
    assert page.wait_step_change(job_id, seen) != seen  # live again, not a stale copy
    cancel_on_page(page, job_id, c)
    page.assert_clean()


def test_the_session_cookie_is_signed_httponly_lax_and_holds_no_job(
    open_page: Callable[..., JobPage], settings: Settings, c: Clients
) -> None:
    page = open_page()
    job_id = page.submit(BIG_N)
    page.wait_running(job_id)
    context = page.page.context
    (cookie,) = context.cookies()  # the browser's one cookie: its session, set by the backend
    now = time.time()
    assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (COOKIE_NAME, "/", True, "Lax")
    assert now + MAX_AGE_S - 120 < cookie["expires"] <= now + MAX_AGE_S + 1
    assert page.page.evaluate("document.cookie") == "", "no script in the page reads it"
    owner = owner_of_value(cookie["value"], kept_secret(settings))
    assert owner is not None
    assert owner.startswith("b-")
    assert job_id not in cookie["value"]
    assert service.get_job(job_id, c).owner == owner


@BOTH_STATE_MANAGERS
def test_new_context_with_the_cookies_shows_the_final_state(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    first = open_page()
    job_id = first.submit(1500)
    first.wait_running(job_id)
    cookies = first.page.context.cookies()
    first.page.context.close()

    assert wait_finished(c, job_id).status is JobStatus.SUCCEEDED
    context = new_context()
    context.add_cookies(cookies)  # type: ignore[arg-type]
    page = open_page(context)
    page.wait_status(job_id, "succeeded", timeout_s=TIMEOUT_S)
    expect(page.step_text(job_id)).to_have_text("1,500/1,500")
    page.assert_clean()


class CommandLog(threading.Thread):
    """The commands Redis runs for clients (not inside scripts), as MONITOR reports them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.commands: list[str] = []
        self.stopped = threading.Event()
        self.monitor = redis.Redis.from_url(settings.redis_url).monitor()
        self.monitor.__enter__()  # MONITOR is on once this returns: nothing after it is missed
        self.start()

    def run(self) -> None:
        while not self.stopped.is_set():
            command = self.monitor.next_command()
            if command["client_type"] != "lua":
                self.commands.append(command["command"])

    def stop(self) -> list[str]:
        self.stopped.set()
        redis.Redis.from_url(self.settings.redis_url).ping()  # wakes the reader up
        self.join(10)
        self.monitor.__exit__()
        return self.commands


@BOTH_STATE_MANAGERS
def test_five_submits_in_a_row_read_each_new_job_once(open_page: Callable[..., JobPage], settings: Settings) -> None:
    """One watcher per page: a submit follows its job and reads its snapshot once; the watcher that
    runs already takes the new job on (a watcher per submit would read every unfinished job again)."""
    page = open_page()
    log = CommandLog(settings)
    try:
        job_ids = [page.submit(300) for _ in range(5)]
        for job_id in job_ids:
            page.wait_status(job_id, "succeeded")
    finally:
        commands = log.stop()
    reads = Counter(command.split()[1] for command in commands if command.startswith("GET jobstream:job:"))
    assert reads == {snapshot_key(job_id): 1 for job_id in job_ids}
    page.assert_clean()


def test_two_jobs_in_one_page_newest_first(open_page: Callable[..., JobPage]) -> None:
    page = open_page()
    older = page.submit(1500)
    newer = page.submit(2000)
    assert page.card_ids() == [newer, older]
    page.wait_status(older, "succeeded")
    page.wait_status(newer, "succeeded")
    expect(page.step_text(older)).to_have_text("1,500/1,500")
    expect(page.step_text(newer)).to_have_text("2,000/2,000")
    assert page.card_ids() == [newer, older]
    page.assert_clean()


def test_cancel_stops_a_running_job(open_page: Callable[..., JobPage], c: Clients, settings: Settings) -> None:
    page = open_page()
    job_id = page.submit(BIG_N)
    page.wait_running(job_id, min_step=50)
    page.card(job_id).get_by_test_id("job-cancel").click()

    page.wait_status(job_id, "cancelled", timeout_s=TIMEOUT_S)
    expect(page.card(job_id).get_by_test_id("job-cancel")).to_have_count(0)
    state = wait_finished(c, job_id, timeout_s=TIMEOUT_S)
    assert state.status is JobStatus.CANCELLED
    assert 50 <= state.step < BIG_N
    expect(page.step_text(job_id)).to_have_text(f"{state.step:,}/{BIG_N:,}")
    # Nothing to await for "no longer moves": watch it for several progress intervals.
    page.page.wait_for_timeout(10 * settings.progress_interval_ms)
    assert service.get_job(job_id, c) == state
    expect(page.step_text(job_id)).to_have_text(f"{state.step:,}/{BIG_N:,}")
    page.assert_clean()


@BOTH_STATE_MANAGERS
def test_the_log_shows_every_step_a_page_at_a_time(open_page: Callable[..., JobPage]) -> None:
    page = open_page()
    job_id = page.submit(250)
    page.wait_status(job_id, "succeeded")
    page.card(job_id).get_by_test_id("job-log-open").click()
    log = page.page.get_by_test_id("job-log")
    rows = log.get_by_test_id("job-log-row")
    cells = rows.locator("td")

    # The first record (step 0, with the params), 250 steps and the final record, 100 to a page.
    expect(log.get_by_test_id("job-log-param")).to_have_text(["n250"])
    for first_step, count in ((0, 100), (100, 100), (200, 52)):
        expect(rows).to_have_count(count)
        expect(rows.first.locator("td").first).to_have_text(str(first_step))
        expect(rows.last.locator("td").first).to_have_text(str(min(first_step + count - 1, 250)))
        if count == 100:
            log.get_by_test_id("job-log-next").click()
    expect(rows.last.locator("td").nth(1)).to_have_text("succeeded")
    expect(log.get_by_test_id("job-log-range")).to_have_text("52 records shown (the end of the log)")
    expect(log.get_by_test_id("job-log-next")).to_be_disabled()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", cells.nth(2).inner_text())

    log.get_by_role("button", name="Close").click()
    expect(log).to_be_hidden()
    page.assert_clean()


def finished_count_job(page: JobPage, n: int = 100) -> str:
    job_id = page.submit(n)
    page.wait_status(job_id, "succeeded")
    return job_id


def click_with_their_job_id(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], web: WebApp, c: Clients,
    event: str, button: str, their_job: Callable[[JobPage], str] = finished_count_job,
    my_job: Callable[[JobPage], str] = lambda page: finished_count_job(page, 50),
) -> tuple[JobPage, str, str, str, set[bytes], list[str]]:  # fmt: skip
    """Click `button` on a page's own finished job (`my_job` starts it and waits for its end), its
    `event` carrying the id of another browser's job (`their_job` likewise) instead, as a client
    that is not a browser could send it. Returns the page, its job, the other's job, a job the page
    submitted after the click, the snapshots created meanwhile and every message the page received."""
    theirs = their_job(open_page())
    page = JobPage(new_context().new_page(), web.frontend + "/")
    mine: list[str] = []
    asked, received = swap_job_id(page.page, (event,), mine, theirs)
    page.open()
    mine.append(my_job(page))
    snapshots = snapshot_key(mine[0]).rsplit(":", 1)[0] + ":*"
    before = set(c.redis.scan_iter(snapshots))
    page.card(mine[0]).get_by_test_id(button).click()
    # The page's events are handled in order: once the next one's card shows, the click was handled.
    page.choose_type("count")
    later = page.submit(10)
    page.wait_status(later, "succeeded")
    assert asked, f"the {event} event carried the other browser's job id"
    own = mine.pop()  # the page's later events go out as it sends them
    return page, own, theirs, later, set(c.redis.scan_iter(snapshots)) - before, received


def test_the_log_opens_only_for_a_job_of_this_page(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], web: WebApp, c: Clients
) -> None:
    page, _, theirs, _, _, received = click_with_their_job_id(
        open_page, new_context, web, c, "log_state.open", "job-log-open"
    )
    assert not any(theirs in message for message in received), "nothing of the other's job reached the page"
    expect(page.page.get_by_test_id("job-log")).to_have_count(0)
    assert theirs not in page.card_ids()
    page.assert_clean()


def test_run_again_only_for_a_job_of_this_page(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], web: WebApp, c: Clients
) -> None:
    page, mine, _, later, created, _ = click_with_their_job_id(
        open_page, new_context, web, c, "jobs_state.rerun", "job-rerun"
    )
    assert created == {snapshot_key(later).encode()}, "nothing but the page's own submit was created"
    assert page.card_ids() == [later, mine]
    page.assert_clean()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("abc", "valid integer"),
        ("0", "greater than or equal to 1"),
        ("-5", "greater than or equal to 1"),
        ("1.5", "valid integer"),
        ("99999999999", "less than or equal to"),
        ("", "required"),
    ],
)
def test_bad_input_creates_nothing(bad: str, reason: str, open_page: Callable[..., JobPage], c: Clients) -> None:
    keys = snapshot_keys(c)
    page = open_page()
    page.send_instead(n=bad)  # past the browser's own checks, as a client other than the page could
    page.type_n("5")
    expect(page.param_error("n")).to_contain_text(reason)
    expect(page.page.get_by_test_id("job-error")).to_have_count(0)
    expect(page.cards).to_have_count(0)
    assert snapshot_keys(c) == keys
    page.assert_clean()


def test_each_context_sees_only_its_own_jobs(open_page: Callable[..., JobPage], c: Clients) -> None:
    alice, bob = open_page(), open_page()
    a = alice.submit(BIG_N)
    b = bob.submit(BIG_N)
    alice.wait_running(a)
    bob.wait_running(b)
    assert alice.card_ids() == [a]
    assert bob.card_ids() == [b]
    service.cancel_job(a, c)
    service.cancel_job(b, c)
    alice.wait_status(a, "cancelled")
    bob.wait_status(b, "cancelled")
    assert alice.card_ids() == [a]
    assert bob.card_ids() == [b]
    alice.assert_clean()
    bob.assert_clean()


@BOTH_STATE_MANAGERS
def test_tabs_of_one_browser_share_the_cookie(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    context = new_context()
    first, second = open_page(context), open_page(context)
    a = first.submit(BIG_N)
    b = second.submit(BIG_N)
    assert len(context.cookies()) == 1, "one session for both tabs"
    assert service.get_job(a, c).owner == service.get_job(b, c).owner

    cookies = context.cookies()
    context.close()  # the browser is closed with both tabs; the jobs go on

    reopened = new_context()
    reopened.add_cookies(cookies)  # type: ignore[arg-type]
    later = open_page(reopened)
    expect(later.cards).to_have_count(2)
    assert later.card_ids() == [b, a]
    later.wait_running(a)
    later.wait_running(b)
    later.assert_clean()


def forgeries(theirs: str, secret: str) -> dict[str, str]:
    """Session cookie values a client could make up, from a real one of another browser's."""
    owner, _, mac = theirs.partition(".")
    other = f"b-{uuid.uuid4().hex}"
    return {
        "their-owner-bad-signature": f"{owner}.{mac[::-1]}",
        "their-owner-no-signature": owner,
        "another-key": cookie_value(owner, secret[::-1]),
        "made-up-owner": f"{other}.{mac}",
        "garbage": "%ZZ%%,,=not a session",
        "markup": "<script>alert(1)</script>",
        "3kb": "b-" + "a" * 3000,
    }


def test_a_forged_session_cookie_gets_a_new_owner_and_nothing_of_anyone_elses(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], web: WebApp, settings: Settings
) -> None:
    """Another browser's jobs stay theirs: a cookie that is not exactly theirs, signed with the
    app's key, names nobody; the page gets a session of its own and works as usual."""
    victim = open_page()
    their_job = victim.submit(BIG_N)
    victim.wait_running(their_job)
    (theirs,) = victim.page.context.cookies()
    for case, value in forgeries(theirs["value"], kept_secret(settings)).items():
        context = new_context()
        context.add_cookies([{"name": COOKIE_NAME, "value": value, "url": web.backend}])
        page = open_page(context)
        expect(page.page.get_by_test_id("job-error")).to_have_count(0)
        assert page.card_ids() == [], case
        (given,) = context.cookies()
        assert given["value"] != value, case
        assert owner_of_value(given["value"], kept_secret(settings)) not in (None, theirs["value"].partition(".")[0])
        mine = page.submit(20)
        page.wait_status(mine, "succeeded")
        assert page.card_ids() == [mine], case
        page.assert_clean()
        context.close()
    victim.wait_running(their_job, min_step=victim.step(their_job)[0] + 1)
    victim.assert_clean()


def subscribers(c: Clients, job_id: str) -> int:
    """How many Redis connections listen to the job's progress channel (Redis' own count)."""
    counts: list[tuple[bytes, int]] = c.redis.pubsub_numsub(channel(job_id))  # type: ignore[assignment]
    return int(counts[0][1])


@BOTH_STATE_MANAGERS
def test_pages_share_one_subscription_and_a_closed_page_leaves_none(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    first_context = new_context()
    first = open_page(first_context)
    job_id = first.submit(BIG_N)
    first.wait_running(job_id)
    second_context = new_context()
    second_context.add_cookies(first_context.cookies())  # type: ignore[arg-type]
    second = open_page(second_context)
    second.wait_running(job_id, min_step=first.step(job_id)[0] + 1)
    # Two pages watch the job: the backend process still listens once.
    assert subscribers(c, job_id) == 1

    first_context.close()
    second.wait_running(job_id, min_step=second.step(job_id)[0] + 1)
    assert subscribers(c, job_id) == 1
    # Once the last page has gone (and its grace to reconnect has passed), its watcher ends and the
    # process stops listening to the job, which goes on running.
    second_context.close()
    wait_for(lambda: subscribers(c, job_id) == 0, RECONNECT_GRACE_S + 15, "the watchers of closed pages to end")
    assert service.get_job(job_id, c).status is JobStatus.RUNNING


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two computed CSS colours (`rgb(...)`, `rgba(...)` or `color(srgb ...)`)."""

    def luminance(css: str) -> float:
        numbers = [float(x) for x in re.findall(r"[\d.]+", css)[:3]]
        scale = 1.0 if css.startswith("color(") else 255.0
        linear = [v / scale / 12.92 if v / scale <= 0.04045 else ((v / scale + 0.055) / 1.055) ** 2.4 for v in numbers]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_readable_in_light_and_dark_mode(
    scheme: str, open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    page = open_page(new_context(color_scheme=scheme))
    job_id = page.submit(300)
    page.wait_status(job_id, "succeeded")
    colours = page.page.evaluate(
        """() => {
            const colour = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
            return {
                page: colour(".radix-themes", "backgroundColor"),
                step: colour("[data-testid=job-step]", "color"),
                heading: colour("h1", "color"),
            };
        }"""
    )
    page_is_dark = contrast(colours["page"], "rgb(0, 0, 0)") < contrast(colours["page"], "rgb(255, 255, 255)")
    assert page_is_dark == (scheme == "dark"), colours
    for text in ("step", "heading"):
        assert contrast(colours[text], colours["page"]) >= 4.5, colours
    page.page.screenshot(path=Path(c.settings.run_dir) / f"screenshot-{scheme}.png", full_page=True)
    page.assert_clean()


def test_screenshot_and_narrow_viewport(open_page: Callable[..., JobPage], c: Clients) -> None:
    page = open_page()
    done = [page.submit(n) for n in (1200, 2500)]
    for job_id in done:
        page.wait_status(job_id, "succeeded")
    running = page.submit(8000)  # ~20 s at 2 ms a step: pictured part way, running
    page.wait_running(running, min_step=3000)
    # Let the rate/ETA line settle on a value before the picture.
    expect(page.card(running)).to_contain_text("ETA")
    # The README's picture (assets/screenshot.png) is a copy of this one, taken by hand.
    page.page.screenshot(path=Path(c.settings.run_dir) / "screenshot.png", full_page=True)

    page.page.set_viewport_size({"width": 390, "height": 844})
    page.page.wait_for_function("() => window.innerWidth === 390")
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    page.page.screenshot(path=Path(c.settings.run_dir) / "screenshot-390.png", full_page=True)
    page.assert_clean()


def test_the_bar_never_moves_backwards(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext]
) -> None:
    """Two tabs of one browser follow a job to its end; every change each card shows (recorded in the
    DOM as it happens, as the bench's browser records it) moves its step forward, and ends on the last."""
    context = new_context()
    first = open_page(context)
    job_id = first.submit(3_000)
    second = open_page(context)
    pages = [first, second]
    for page in pages:
        expect(page.card(job_id)).to_be_visible()
        page.page.evaluate(OBSERVE_JS, {"jobId": job_id, "finished": sorted(FINISHED)})
    for page in pages:
        page.page.wait_for_function("() => window.__jobDone === true")
        rows = page.page.evaluate("() => window.__arrivals")
        steps = [parse_step(step)[0] for _, step, _ in rows]
        assert len(steps) > 5, rows
        assert steps == sorted(steps), steps
        assert steps[-1] == 3_000
        page.assert_clean()
