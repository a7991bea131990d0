"""The History tab, in real Chromium against the real app, worker and history consumer: the owner's
past jobs newest first, filtered and paged, each opening its log and result after the live list no
longer shows it; nobody else's, whatever the page sends."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, expect

from rxapp.session import COOKIE_NAME
from rxapp.state.history import HISTORY_PAGE, UNREADABLE
from settings import Settings
from stack.processes import Child, app_env
from tasks.clients import Clients
from tasks.history.store import stored_record
from tasks.joblog import topic_name
from tasks.model import JobState, JobStatus
from tasks.progress import SNAPSHOT_PREFIX
from tests.browser import JobPage, swap_job_id
from tests.conftest import BOTH_STATE_MANAGERS, WebApp, run_async, wait_for
from tests.test_sockets import LOG, RESULT, ROOT, RawPage

# Every test also fails when the app logged an exception while it ran.
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_backend_exceptions", "history_consumer")]


@pytest.fixture(scope="session")
def history_consumer(settings: Settings) -> Iterator[Child]:
    """`python -m tasks.history run` with the app's own settings: it fills the store the web app reads.
    One for the session: the tests of each web app (memory, redis) are not next to each other, and a
    module's fixture would be started again between them, with a group rebalance each time."""
    child = Child(
        "history-page-test",
        [sys.executable, "-m", "tasks.history", "run"],
        settings.run_dir / "logs" / "history-page-test.log",
        app_env(),
        die_with_parent=True,
    )
    child.wait_until(lambda: "job logs into" in child.log(), 60, "the history consumer's start")
    # The consumer and the web app (same settings) use one store: the one this process reads.
    assert f"sqlite:///{settings.run_dir / 'history.db'}" in child.log()
    yield child
    child.stop(15)


def stored(c: Clients, job_id: str) -> JobState:
    """Wait until the store has read the job's end."""

    def ended() -> JobState | None:
        state = c.history.job(job_id)
        return state if state is not None and state.status.finished else None

    return wait_for(ended, 60, f"the store to hold the end of job {job_id}")


def finished(page: JobPage, c: Clients, job_type: str, status: str = "succeeded", **params: str) -> str:
    job_id = page.start(job_type, **params)
    page.wait_status(job_id, status)
    stored(c, job_id)
    return job_id


def snapshots(c: Clients) -> set[bytes]:
    return set(c.redis.scan_iter(SNAPSHOT_PREFIX + "*"))


def owner_of(context: BrowserContext) -> str:
    (value,) = [cookie["value"] for cookie in context.cookies() if cookie["name"] == COOKIE_NAME]
    return value.partition(".")[0]


def open_history(page: JobPage) -> None:
    """Open the History tab; return once it shows its answer (jobs, none, or why it cannot)."""
    page.page.get_by_test_id("tab-history").click()
    expect(page.page.get_by_test_id("history-view")).to_be_visible()
    shown = ("history-row", "history-empty", "history-error")
    answer = page.page.locator(", ".join(f"[data-testid={testid}]" for testid in shown))
    expect(answer.first).to_be_visible()


def row(page: JobPage, job_id: str) -> Locator:
    return page.page.locator(f'[data-testid="history-row"][data-job-id="{job_id}"]')


def history_ids(page: JobPage) -> list[str]:
    return page.page.get_by_test_id("history-row").evaluate_all("rows => rows.map((row) => row.dataset.jobId)")


def show_ids(page: JobPage, ids: list[str]) -> None:
    """Wait until the History shows exactly these jobs, in this order."""
    rows = page.page.get_by_test_id("history-row")
    expect(rows).to_have_count(len(ids))
    for index, job_id in enumerate(ids):
        expect(rows.nth(index)).to_have_attribute("data-job-id", job_id)


def filter_by(page: JobPage, value: str) -> None:
    page.page.get_by_test_id("history-filter").select_option(value)


def test_the_history_lists_the_owners_jobs_newest_first_filters_and_runs_again(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    page = open_page()
    open_history(page)
    expect(page.page.get_by_test_id("history-empty")).to_have_text("No finished jobs yet.")
    page.page.get_by_test_id("tab-jobs").click()

    ok = finished(page, c, "count", n="20")
    failed = finished(page, c, "steps_then_fail", "failed", n="30", fail_at="5")
    cancelled = page.start("count", n="1000000")
    page.wait_running(cancelled)
    page.card(cancelled).get_by_test_id("job-cancel").click()
    page.wait_status(cancelled, "cancelled")
    stored(c, cancelled)

    open_history(page)
    show_ids(page, [cancelled, failed, ok])
    expect(page.cards).to_have_count(0)  # the live list's tab is not shown meanwhile
    expect(row(page, ok).get_by_test_id("job-status")).to_have_text("succeeded")
    expect(row(page, ok).get_by_test_id("job-type-title")).to_have_text("Count")
    expect(row(page, ok).get_by_test_id("job-params")).to_have_text("n=20")
    expect(row(page, ok).get_by_test_id("history-step")).to_have_text("20/20")
    expect(row(page, ok).get_by_test_id("history-time")).to_have_text(re.compile(r"^took "))
    expect(row(page, ok).get_by_test_id("history-started")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
    )
    expect(row(page, failed).get_by_test_id("job-status")).to_have_text("failed")
    expect(row(page, cancelled).get_by_test_id("job-status")).to_have_text("cancelled")
    # A count job returns nothing: no Result button; every finished one runs again.
    expect(row(page, ok).get_by_test_id("history-result-open")).to_have_count(0)
    expect(page.page.get_by_test_id("history-rerun")).to_have_count(3)
    expect(page.page.get_by_test_id("history-older")).to_have_count(0)  # one page only

    for value, ids in [("failed", [failed]), ("succeeded", [ok]), ("cancelled", [cancelled]), ("running", [])]:
        filter_by(page, value)
        show_ids(page, ids)
    expect(page.page.get_by_test_id("history-empty")).to_have_text("No running jobs.")
    filter_by(page, "all")
    show_ids(page, [cancelled, failed, ok])

    # The README's picture (assets/screenshot-history.png) is a copy of this one, taken by hand.
    page.page.screenshot(path=Path(c.settings.run_dir) / "screenshot-history.png", full_page=True)
    for scheme in ("light", "dark"):
        page.page.emulate_media(color_scheme=scheme)
        page.page.set_viewport_size({"width": 390, "height": 844})
        page.page.wait_for_function("() => window.innerWidth === 390")
        assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
        page.page.screenshot(path=Path(c.settings.run_dir) / f"screenshot-history-390-{scheme}.png", full_page=True)

    # Run again: a new job of the same type and params, its card in the live list, which shows.
    before = snapshots(c)
    row(page, ok).get_by_test_id("history-rerun").click()
    expect(page.page.get_by_test_id("tab-jobs")).to_have_attribute("data-state", "active")
    expect(page.cards).to_have_count(4)
    again = page.card_ids()[0]
    page.submitted.append(again)
    assert again not in (ok, failed, cancelled)
    expect(page.card(again).get_by_test_id("job-params")).to_have_text("n=20")
    page.wait_status(again, "succeeded")
    assert len(snapshots(c) - before) == 1
    page.assert_clean()


@BOTH_STATE_MANAGERS
def test_the_history_pages_newest_first_with_older_and_newer(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    """Real jobs, and earlier ones of the same owner written straight into the store (cheaper)."""
    context = new_context()
    page = open_page(context)
    newest = finished(page, c, "count", n="10")
    owner = owner_of(context)
    start = time.time() - 600
    written = []
    for i in range(2 * HISTORY_PAGE + 4):
        job_id = str(uuid.uuid4())
        status = JobStatus.FAILED if i % 2 else JobStatus.SUCCEEDED
        state = JobState(
            job_id, 5, 5, status, start + i, started_at=start + i, job_type="count", params={"n": 5}, owner=owner
        )
        record = stored_record(topic_name(c.settings, job_id), 0, 0, state.to_json().encode())
        assert record is not None
        c.history.write([record])
        written.append(job_id)
    expected = [newest, *reversed(written)]

    open_history(page)
    seen: list[list[str]] = []
    for number in (1, 2, 3):
        expect(page.page.get_by_test_id("history-page")).to_have_text(f"Page {number}")
        show_ids(page, expected[(number - 1) * HISTORY_PAGE : number * HISTORY_PAGE])
        seen.append(history_ids(page))
        if number < 3:
            page.page.get_by_test_id("history-older").click()
    expect(page.page.get_by_test_id("history-older")).to_be_disabled()
    assert [job_id for ids in seen for job_id in ids] == expected  # every job once, newest first
    page.page.get_by_test_id("history-newer").click()
    show_ids(page, seen[1])
    page.page.get_by_test_id("history-newer").click()
    show_ids(page, seen[0])
    expect(page.page.get_by_test_id("history-newer")).to_be_disabled()

    # The filter pages too, from its own first page.
    failed = [job_id for job_id in expected if job_id in written[1::2]]
    filter_by(page, "failed")
    show_ids(page, failed[:HISTORY_PAGE])
    page.page.get_by_test_id("history-older").click()
    show_ids(page, failed[HISTORY_PAGE:])
    page.assert_clean()


def test_a_job_the_live_list_no_longer_shows_opens_from_the_history(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    context = new_context()
    page = open_page(context)
    job_id = finished(page, c, "records", rows="3")
    page.card(job_id).get_by_role("button", name="Dismiss").click()
    expect(page.cards).to_have_count(0)

    def opens_log_and_result(page: JobPage) -> None:
        open_history(page)
        show_ids(page, [job_id])
        row(page, job_id).get_by_test_id("history-log-open").click()
        log = page.page.get_by_test_id("job-log")
        expect(log).to_be_visible()
        expect(log).to_contain_text(job_id)
        expect(log.get_by_test_id("job-log-range")).to_contain_text("(the end of the log)")
        expect(log.locator("tbody tr").last).to_contain_text("succeeded")
        log.get_by_role("button", name="Close").click()
        expect(log).to_have_count(0)
        row(page, job_id).get_by_test_id("history-result-open").click()
        view = page.page.get_by_test_id("job-result-view")
        expect(view.get_by_test_id("job-result-row")).to_have_count(3)
        expect(view.get_by_test_id("job-result-row").nth(1).locator("td")).to_have_text(
            ["1", "item 1", "false", "0.25", "null"]
        )
        view.get_by_role("button", name="Close").click()
        expect(view).to_have_count(0)
        page.assert_clean()

    opens_log_and_result(page)

    # The same browser in another window: its first page shows the finished job once more (see
    # tasks.owners.recent), a page opened after that none of its cards.
    again = new_context()
    again.add_cookies(context.cookies())  # type: ignore[arg-type]  # a Cookie is a SetCookieParam
    expect(open_page(again).card(job_id)).to_have_count(1)
    other_window = open_page(again)
    expect(other_window.cards).to_have_count(0)
    opens_log_and_result(other_window)

    # Another browser sees none of it.
    stranger = open_page()
    open_history(stranger)
    expect(stranger.page.get_by_test_id("history-empty")).to_have_text("No finished jobs yet.")
    stranger.assert_clean()


FORGED_EVENTS = ("log_state.open", "result_state.open", "history_state.rerun")


def test_a_forged_event_naming_another_owners_job_gets_nothing(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], web: WebApp, c: Clients
) -> None:
    """A page whose row buttons send the victim's job id (as a client that is not a browser could)
    gets none of its log or result, and runs nothing."""
    secret = "history-of-another-browser"
    theirs = finished(open_page(), c, "nested", label=secret)
    page = JobPage(new_context().new_page(), web.frontend + "/")
    mine: list[str] = []
    forged, received = swap_job_id(page.page, FORGED_EVENTS, mine, theirs)
    page.open()
    mine.append(finished(page, c, "nested", label="mine"))
    open_history(page)
    show_ids(page, [mine[0]])
    before = snapshots(c)
    for button in ("history-log-open", "history-result-open", "history-rerun"):
        row(page, mine[0]).get_by_test_id(button).click()
    # A page's events are handled in order: once the filter's answer shows, the clicks were handled.
    filter_by(page, "failed")
    expect(page.page.get_by_test_id("history-empty")).to_have_text("No failed jobs.")
    assert len(forged) == 3, forged
    assert not [message for message in received if secret in message or theirs in message]
    expect(page.page.get_by_test_id("job-log")).to_have_count(0)
    expect(page.page.get_by_test_id("job-result-view")).to_have_count(0)
    expect(page.page.get_by_test_id("tab-history")).to_have_attribute("data-state", "active")
    assert snapshots(c) == before  # nothing ran again
    page.assert_clean()


def test_a_history_that_cannot_be_read_says_so(open_page: Callable[..., JobPage], c: Clients) -> None:
    c.history.migrate()
    database = c.history.engine.url.database
    assert database
    page = open_page()
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE jobs RENAME TO jobs_away")
    try:
        open_history(page)
        expect(page.page.get_by_test_id("history-error")).to_have_text(UNREADABLE)
        expect(page.page.get_by_test_id("history-empty")).to_have_count(0)
    finally:
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE jobs_away RENAME TO jobs")
    page.page.get_by_test_id("history-refresh").click()
    expect(page.page.get_by_test_id("history-error")).to_have_count(0)
    expect(page.page.get_by_test_id("history-empty")).to_have_text("No finished jobs yet.")
    page.assert_clean()


HISTORY = f"{ROOT}.rxapp___state___history____history_state"


def test_a_raw_client_naming_another_owners_job_gets_nothing_from_the_history(
    open_page: Callable[..., JobPage], web: WebApp, c: Clients
) -> None:
    """Without a browser: the history's events with the victim's job id, and filters and tabs it
    does not offer, read, run and show nothing of it."""
    theirs = finished(open_page(), c, "nested", label="history-of-another-browser")
    before = snapshots(c)

    async def attack() -> RawPage:
        raw = RawPage(web)
        await raw.open()
        await raw.send(f"{HISTORY}.show_tab", tab="history")
        for name in (f"{HISTORY}.rerun", f"{LOG}.open", f"{RESULT}.open"):
            await raw.send(name, job_id=theirs)
        for value in ("queued", "all' OR 1=1 --", "x" * 10_000, theirs):
            await raw.send(f"{HISTORY}.filter_by", status_filter=value)
        await raw.send(f"{HISTORY}.show_tab", tab="admin")
        await raw.send(f"{HISTORY}.older")
        await raw.send(f"{HISTORY}.newer")
        # Events of a page run in order: once this one's change arrives, all of the above have run.
        await raw.send(f"{HISTORY}.filter_by", status_filter="failed")
        await raw.until(lambda: any(d.get("status_filter_rx_state_") == "failed" for d in raw.deltas(HISTORY)))
        await raw.sio.disconnect()
        return raw

    raw = run_async(attack())
    assert theirs not in json.dumps(raw.updates), "nothing of their job reached the raw client"
    deltas = raw.deltas(HISTORY)
    # The first delta is the whole state, with its defaults.
    assert {d["status_filter_rx_state_"] for d in deltas if "status_filter_rx_state_" in d} == {"all", "failed"}
    assert {d["tab_rx_state_"] for d in deltas if "tab_rx_state_" in d} == {"jobs", "history"}
    assert all(d.get("rows_rx_state_", []) == [] for d in deltas)
    assert snapshots(c) == before  # nothing ran again
