"""What a job says back, in real Chromium against the real app and worker: its result in full (a
table or formatted JSON) and downloaded, only for a job of the page; the tab's title while jobs run;
a notification when a job ends in a hidden tab, asked for only through the bell."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from rxapp.state.result import ROWS_SHOWN
from tasks import service
from tasks.clients import Clients
from tests.browser import JobPage
from tests.conftest import WebApp
from tests.test_page import click_with_their_job_id

# Every test also fails when the app logged an exception while it ran.
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_backend_exceptions")]

RESULT_OPEN_EVENT = "result_state.open"


def open_result(page: JobPage, job_id: str) -> Any:
    """Open a finished job's result dialog from its card; return the dialog."""
    page.wait_status(job_id, "succeeded")
    page.card(job_id).get_by_test_id("job-result-open").click()
    view = page.page.get_by_test_id("job-result-view")
    expect(view).to_be_visible()
    return view


def download(page: JobPage, view: Any, tmp_path: Path) -> tuple[str, Any]:
    """Press Download in the dialog; return the file's suggested name and its JSON content."""
    with page.page.expect_download() as info:
        view.get_by_test_id("job-result-download").click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    return info.value.suggested_filename, json.loads(saved.read_text(encoding="utf-8"))


def test_a_list_of_records_is_a_table_and_downloads_in_full(
    open_page: Callable[..., JobPage], c: Clients, tmp_path: Path
) -> None:
    page = open_page()
    rows = ROWS_SHOWN + 100
    job_id = page.start("records", rows=str(rows))
    view = open_result(page, job_id)
    result = service.get_job(job_id, c).result
    assert isinstance(result, list)
    assert len(result) == rows

    # Every key as a column, in the order first seen ("note" first appears in the second record).
    expect(view.locator("th")).to_have_text(["id", "name", "even", "ratio", "note"])
    table_rows = view.get_by_test_id("job-result-row")
    expect(table_rows).to_have_count(ROWS_SHOWN)
    expect(table_rows.nth(0).locator("td")).to_have_text(["0", "item 0", "true", "0.0", ""])
    expect(table_rows.nth(1).locator("td")).to_have_text(["1", "item 1", "false", "0.25", "null"])
    expect(table_rows.last.locator("td")).to_have_text(
        [f"{ROWS_SHOWN - 1}", f"item {ROWS_SHOWN - 1}", "false", "124.75", ""]
    )
    expect(view.get_by_test_id("job-result-rows")).to_have_text(f"first {ROWS_SHOWN} of {rows} rows")
    expect(view.get_by_test_id("job-result-json")).to_have_count(0)

    name, content = download(page, view, tmp_path)
    assert name == f"{job_id}.json"
    assert content == result  # all of it, not only the rows shown
    page.page.screenshot(path=Path(c.settings.run_dir) / "screenshot-result-table.png")

    view.get_by_role("button", name="Close").click()
    expect(view).to_have_count(0)
    page.assert_clean()


def test_a_nested_result_is_formatted_json_and_downloads(
    open_page: Callable[..., JobPage], c: Clients, tmp_path: Path
) -> None:
    page = open_page()
    job_id = page.start("nested", label="<b>bold</b>")
    view = open_result(page, job_id)
    result = service.get_job(job_id, c).result
    assert isinstance(result, dict)
    assert result["label"] == "<b>bold</b>"

    block = view.get_by_test_id("job-result-json")
    expect(block).to_have_text(json.dumps(result, indent=2, ensure_ascii=False))
    expect(view.locator("table")).to_have_count(0)
    expect(view.locator("b")).to_have_count(0)  # the label is text, not markup
    # The card still shows the summary, in one line.
    expect(page.card(job_id).get_by_test_id("job-result")).to_contain_text('label="<b>bold</b>"')

    name, content = download(page, view, tmp_path)
    assert name == f"{job_id}.json"
    assert content == result
    page.page.screenshot(path=Path(c.settings.run_dir) / "screenshot-result-json.png")
    page.assert_clean()


def test_the_result_opens_only_for_a_job_of_this_page(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], web: WebApp, c: Clients
) -> None:
    """A page that sends the result event with another browser's job id (as a client that is not a
    browser could) gets nothing: the other job's result never reaches it."""
    secret = "result-of-another-browser"

    def finished(job_type: str, **params: str) -> Callable[[JobPage], str]:
        def start(page: JobPage) -> str:
            job_id = page.start(job_type, **params)
            page.wait_status(job_id, "succeeded")
            return job_id

        return start

    page, mine, theirs, later, _, received = click_with_their_job_id(
        open_page, new_context, web, c, RESULT_OPEN_EVENT, "job-result-open",
        their_job=finished("nested", label=secret), my_job=finished("records", rows="2"),
    )  # fmt: skip
    assert not [message for message in received if secret in message or theirs in message]
    assert secret not in page.page.content()
    assert page.card_ids() == [later, mine]
    # Its own result still opens.
    view = open_result(page, mine)
    expect(view.get_by_test_id("job-result-row")).to_have_count(2)
    page.assert_clean()


def test_the_title_shows_the_running_jobs_progress(open_page: Callable[..., JobPage]) -> None:
    page = open_page()
    expect(page.page).to_have_title("Jobstream")
    # The page's title is the only one: React hoists it into <head>, no static one competes.
    assert page.page.evaluate("document.querySelectorAll('title').length") == 1

    job_id = page.submit(3000)  # ~6 s at 2 ms a step
    page.wait_running(job_id)
    expect(page.page).to_have_title(re.compile(r"^\d+% · Jobstream$"))
    first = int(page.page.title().split("%")[0])
    # It moves with the job: a higher percent, or the end.
    expect(page.page).to_have_title(re.compile(rf"^(?!{first}%).*Jobstream$"))
    page.wait_status(job_id, "succeeded")
    expect(page.page).to_have_title("Jobstream")
    # A count job returns nothing: no Result button.
    expect(page.card(job_id).get_by_test_id("job-result-open")).to_have_count(0)

    # A job that has not said how many steps it has.
    silent = page.start("silent", seconds="3")
    expect(page.page).to_have_title("running · Jobstream")
    page.wait_status(silent, "succeeded")
    expect(page.page).to_have_title("Jobstream")
    assert page.page.evaluate("document.querySelectorAll('title').length") == 1
    page.assert_clean()


# Stands in for the browser's Notification before the page's scripts run: records what the page
# shows and asks, and reports the permission the context was given.
RECORD_NOTIFICATIONS = """(() => {
  const Real = window.Notification;
  window.__shown = [];
  window.__asked = 0;
  function Recording(title, options) {
    window.__shown.push({title, body: options && options.body, tag: options && options.tag});
  }
  Recording.requestPermission = (...args) => {
    window.__asked += 1;
    return Real.requestPermission(...args);
  };
  Object.defineProperty(Recording, "permission", {get: () => Real.permission});
  window.Notification = Recording;
})();"""

HIDE_PAGE = """() => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
}"""
SHOW_PAGE = "() => { delete document.hidden; delete document.visibilityState; }"


def notifying_page(open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext]) -> JobPage:
    """A page of a context that allowed notifications, with Notification recorded."""
    context = new_context(permissions=["notifications"])
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = open_page(context)
    expect(page.page.get_by_test_id("notify-bell")).to_have_attribute("data-permission", "granted")
    return page


def shown(page: JobPage) -> list[dict[str, str]]:
    return page.page.evaluate("window.__shown")


def test_a_job_that_ends_in_a_hidden_tab_notifies_and_in_a_visible_one_not(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext]
) -> None:
    page = notifying_page(open_page, new_context)
    job_id = page.submit(1500)
    page.wait_running(job_id)
    page.page.evaluate(HIDE_PAGE)
    assert page.page.evaluate("document.hidden") is True
    page.wait_status(job_id, "succeeded")
    page.wait_until(lambda: shown(page), "a notification")
    assert shown(page) == [{"title": "Count: succeeded", "body": "n=1500", "tag": job_id}]

    # Visible again: the next job ends on screen, without a notification.
    page.page.evaluate(SHOW_PAGE)
    assert page.page.evaluate("document.hidden") is False
    visible = page.submit(300)
    page.wait_status(visible, "succeeded")
    # The watcher's last update and the notification's script go out together: a later job's card
    # shown means both were handled.
    later = page.submit(10)
    page.wait_status(later, "succeeded")
    assert shown(page) == [{"title": "Count: succeeded", "body": "n=1500", "tag": job_id}]
    assert page.page.evaluate("window.__asked") == 0
    page.assert_clean()


def test_a_failed_job_in_a_hidden_tab_says_it_failed(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext]
) -> None:
    page = notifying_page(open_page, new_context)
    page.page.evaluate(HIDE_PAGE)
    job_id = page.start("steps_then_fail", n="50", fail_at="20")
    page.wait_status(job_id, "failed")
    page.wait_until(lambda: shown(page), "a notification")
    assert shown(page) == [{"title": "Steps then fail: failed", "body": "n=50 · fail_at=20", "tag": job_id}]
    page.assert_clean()


def test_the_page_asks_for_notifications_only_when_the_bell_is_clicked(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext]
) -> None:
    page = notifying_page(open_page, new_context)  # loaded, and has read the permission
    page.page.reload()
    page.wait_ready()
    expect(page.page.get_by_test_id("notify-bell")).to_have_attribute("data-permission", "granted")
    assert page.page.evaluate("window.__asked") == 0

    bell = page.page.get_by_test_id("notify-bell")
    expect(bell).to_have_attribute("aria-label", re.compile("Notify me"))
    bell.click()
    page.wait_until(lambda: page.page.evaluate("window.__asked") == 1, "the permission request")
    expect(bell).to_have_attribute("data-permission", "granted")
    page.assert_clean()


def test_without_permission_the_bell_asks_and_shows_the_answer(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext]
) -> None:
    context = new_context()
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = open_page(context)
    bell = page.page.get_by_test_id("notify-bell")
    expect(bell).to_have_attribute("data-permission", re.compile("^(default|denied)$"))
    assert page.page.evaluate("window.__asked") == 0
    bell.click()
    page.wait_until(lambda: page.page.evaluate("window.__asked") == 1, "the permission request")
    page.page.evaluate(HIDE_PAGE)
    job_id = page.submit(50)
    page.wait_status(job_id, "succeeded")
    later = page.submit(10)
    page.wait_status(later, "succeeded")
    assert shown(page) == []  # hidden, but not allowed
    page.assert_clean()
