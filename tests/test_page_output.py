"""What a job says back, on the page: its latest line on its card, its log dialog following it
live with a filter for lines, and its traceback, which only the page that holds the job sees."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, expect

from tasks.clients import Clients
from tests.browser import JobPage
from tests.conftest import WebApp
from tests.test_page import click_with_their_job_id

ERROR = "ValueError: item 3 is broken"


def test_the_log_follows_a_running_job_live_and_shows_its_lines_only_on_demand(
    open_page: Callable[..., JobPage],
) -> None:
    page = open_page()
    job_id = page.start("chatty", lines="40", pause_ms="100")
    card = page.card(job_id)
    # The card shows the job's latest line as it goes.
    expect(card.get_by_test_id("job-line")).to_have_text(re.compile(r"line \d+ of 40"))
    card.get_by_test_id("job-log-open").click()
    log = page.page.get_by_test_id("job-log")
    rows = log.get_by_test_id("job-log-row")
    expect(log.get_by_test_id("job-log-range")).to_contain_text("live")
    shown = rows.count()
    # New lines come in without Next: the dialog follows the job to its end.
    expect(rows.filter(has_text="the end, without a line end")).to_have_count(1, timeout=30_000)
    assert rows.count() > shown
    expect(rows.last.locator("td").nth(1)).to_have_text("succeeded")
    expect(log.get_by_test_id("job-log-range")).to_contain_text("(the end of the log)")
    expect(card.get_by_test_id("job-line")).to_have_text("the end, without a line end")

    states = rows.and_(page.page.locator('[data-kind="state"]'))
    assert states.count() >= 2, "everything: the states beside the lines"
    log.get_by_role("radio", name="Lines only").click()
    expect(states).to_have_count(0)
    expect(rows.first).to_contain_text("from ctx.log")
    expect(rows).to_have_count(6 + 40 + 1)
    expect(rows.filter(has_text="a bar")).to_have_count(0)
    log.get_by_role("radio", name="Everything").click()
    expect(states.first).to_be_visible()
    page.assert_clean()


def failed_job(page: JobPage) -> str:
    job_id = page.start("progress_then_fail", fail_at="3")
    page.wait_status(job_id, "failed")
    return job_id


def test_a_failed_job_shows_its_error_on_its_card_and_its_traceback_in_its_log(
    open_page: Callable[..., JobPage],
) -> None:
    page = open_page()
    job_id = failed_job(page)
    card = page.card(job_id)
    expect(card).to_contain_text(ERROR)
    expect(card).not_to_contain_text("Traceback")
    card.get_by_test_id("job-log-open").click()
    traceback = page.page.get_by_test_id("job-log-traceback")
    expect(traceback).to_have_count(1)
    expect(traceback).to_contain_text("Traceback (most recent call last):")
    expect(traceback).to_contain_text("in progress_then_fail")
    expect(traceback).to_contain_text(ERROR)
    page.assert_clean()


def test_a_traceback_never_reaches_a_page_that_does_not_hold_the_job(
    open_page: Callable[..., JobPage], new_context: Callable[..., BrowserContext], web: WebApp, c: Clients
) -> None:
    page, _, theirs, _, _, received = click_with_their_job_id(
        open_page, new_context, web, c, "log_state.open", "job-log-open", their_job=failed_job
    )
    assert not any("Traceback" in message or theirs in message for message in received)
    expect(page.page.get_by_test_id("job-log")).to_have_count(0)
    page.assert_clean()


def place_in_line(text: str) -> int:
    """1 for "next in line · ...", 3 for "3rd in line · ..."."""
    match = re.match(r"(next|([\d,]+)(st|nd|rd|th)) in line", text)
    assert match, text
    return 1 if match[1] == "next" else int(match[2].replace(",", ""))


def test_a_queued_card_shows_its_place_and_when_it_starts_and_moves_up_live(
    open_page: Callable[..., JobPage],
) -> None:
    page = open_page()
    busy = [page.start("slow_restart", seconds="60") for _ in range(2)]  # the worker's two processes
    for job_id in busy:
        page.wait_running(job_id)
    waiting = [page.start("slow_restart", seconds="60") for _ in range(2)]
    places = [page.card(job_id).get_by_test_id("job-queue") for job_id in waiting]
    for place in places:
        expect(place).to_have_text(re.compile(r"(next|[\d,]+\w\w) in line · starts in about \d"))
    first = place_in_line(places[0].inner_text())
    assert place_in_line(places[1].inner_text()) == first + 1
    # The job ahead is cancelled: the next one moves up, without a reload.
    page.card(waiting[0]).get_by_test_id("job-cancel").click()
    page.wait_status(waiting[0], "cancelled")
    expect(places[1]).to_have_text(re.compile(("next" if first == 1 else f"{first:,}\\w\\w") + " in line"))
    # A worker is free: it starts, and its card no longer has a place in line.
    page.card(busy[0]).get_by_test_id("job-cancel").click()
    page.wait_status(waiting[1], "running")
    expect(places[1]).to_have_count(0)
    page.assert_clean()
