"""Job types on the page, in real Chromium: the type picker, the form drawn from each type's params
schema, refusals shown next to their fields, and cards of jobs that report in every way a job can
(steps, a tqdm bar, messages, nothing at all)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from tasks import service
from tasks.clients import Clients
from tests.browser import JobPage, parse_step
from tests.test_page import snapshot_keys

# Every test also fails when the app logged an exception while it ran.
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_backend_exceptions")]

ELAPSED_RE = re.compile(r"^running for ([\d.]+) (ms|s)$")


def attrs(control: Locator, *names: str) -> dict[str, str | None]:
    return {name: control.get_attribute(name) for name in names}


def options(select: Locator) -> list[str]:
    return select.locator("option").evaluate_all("options => options.map((option) => option.value)")


def test_the_picker_lists_every_type_and_count_is_chosen(open_page: Callable[..., JobPage], c: Clients) -> None:
    page = open_page()
    picker = page.page.get_by_test_id("job-type")
    assert options(picker) == list(c.catalog)
    titles = picker.locator("option").all_inner_texts()
    assert titles == [job.title for job in c.catalog.values()]
    expect(picker).to_have_value("count")
    expect(page.page.get_by_test_id("job-type-description")).to_have_text(c.catalog["count"].description)
    # As simple as before: one field, its label from the schema's title.
    expect(page.page.get_by_test_id("job-fields").locator("[name]")).to_have_count(1)
    expect(page.page.get_by_test_id("job-n-input")).to_contain_text("Number of steps")
    assert attrs(page.param("n"), "type", "min", "max", "step", "required") == {
        "type": "number",
        "min": "1",
        "max": str(c.settings.max_n),
        "step": "1",
        "required": "",
    }

    job_id = page.submit(150)
    card = page.card(job_id)
    expect(card.get_by_test_id("job-type-title")).to_have_text("Count")
    expect(card.get_by_test_id("job-params")).to_have_text("n=150")
    page.wait_status(job_id, "succeeded")
    page.assert_clean()


def test_every_kind_of_field_from_the_schema(open_page: Callable[..., JobPage]) -> None:
    page = open_page()
    page.choose_type("every_field")
    expect(page.page.get_by_test_id("job-type-description")).to_contain_text("one parameter of each kind")
    assert attrs(page.param("count"), "type", "min", "max", "step", "required") == {
        "type": "number",
        "min": "2",
        "max": "9",
        "step": "1",
        "required": "",
    }
    expect(page.param("count")).to_have_value("")
    expect(page.page.get_by_test_id("job-count-input")).to_contain_text("Count")
    expect(page.page.locator("#field-count-help")).to_have_text("A whole number from 2 to 9")
    assert attrs(page.param("ratio"), "min", "max", "step") == {"min": "0", "max": "1.5", "step": "any"}
    expect(page.param("ratio")).to_have_value("0.5")
    assert attrs(page.param("label"), "type", "minlength", "maxlength", "pattern", "required") == {
        "type": "text",
        "minlength": "2",
        "maxlength": "12",
        "pattern": "^[a-z]+$",
        "required": "",
    }
    expect(page.param("label")).to_have_value("abc")
    expect(page.param("loud")).to_have_attribute("role", "checkbox")
    expect(page.param("loud")).not_to_be_checked()
    for name, values, default in (("mode", ["fast", "slow"], "fast"), ("colour", ["red", "green", "blue"], "green")):
        assert page.param(name).evaluate("el => el.tagName") == "SELECT"
        assert options(page.param(name)) == values
        expect(page.param(name)).to_have_value(default)
    # Optional: not required, empty, and the default (None) applies.
    assert attrs(page.param("limit"), "type", "required", "min") == {"type": "number", "required": None, "min": None}
    expect(page.param("limit")).to_have_value("")
    page.assert_clean()


def test_bad_values_are_refused_next_to_their_fields_and_create_nothing(
    open_page: Callable[..., JobPage], c: Clients
) -> None:
    keys = snapshot_keys(c)
    page = open_page()
    page.choose_type("every_field")
    submit = page.page.get_by_test_id("job-submit")

    # The browser stops what its HTML attributes refuse, before the server is asked.
    page.set_params(count="1")
    submit.click()
    assert page.param("count").evaluate("el => el.validity.rangeUnderflow")
    expect(page.page.locator("[data-testid^=param-error-]")).to_have_count(0)

    # Without them, the server refuses it: each reason next to its field, nothing else said. (No
    # browser sends text for a number: a client other than the page could.)
    page.send_instead(limit="many")
    page.choose_type("every_field")
    page.unguard()
    page.set_params(count="1", ratio="0", label="ABC")
    submit.click()
    expect(page.param_error("count")).to_contain_text("greater than or equal to 2")
    expect(page.param_error("ratio")).to_contain_text("greater than 0")
    expect(page.param_error("label")).to_contain_text("pattern")
    expect(page.param_error("limit")).to_contain_text("valid integer")
    expect(page.page.locator("[data-testid^=param-error-]")).to_have_count(4)
    expect(page.param("count")).to_have_attribute("aria-invalid", "true")
    expect(page.param("count")).to_have_value("1")  # what was typed stays, to be corrected
    expect(page.page.get_by_test_id("job-error")).to_have_count(0)
    expect(page.cards).to_have_count(0)
    assert snapshot_keys(c) == keys

    # Another type's form has no stale errors, nor has this one when it comes back.
    page.choose_type("count")
    expect(page.page.locator("[data-testid^=param-error-]")).to_have_count(0)
    page.choose_type("every_field")
    expect(page.page.locator("[data-testid^=param-error-]")).to_have_count(0)

    # Good values run: the unchecked box is false, the empty optional field takes its default.
    page.send_instead()
    job_id = page.start("every_field", count="3", label="xyz", loud=True, mode="slow", colour="blue")
    expect(page.page.locator("[data-testid^=param-error-]")).to_have_count(0)
    card = page.card(job_id)
    expect(card.get_by_test_id("job-type-title")).to_have_text("Every field")
    params = "count=3 · ratio=0.5 · label=xyz · loud=true · mode=slow · colour=blue"  # limit=None left out
    expect(card.get_by_test_id("job-params")).to_have_text(params)
    page.wait_status(job_id, "succeeded")
    expect(card.get_by_test_id("job-result")).to_have_text(params)
    assert service.get_job(job_id, c).params == {
        "count": 3,
        "ratio": 0.5,
        "label": "xyz",
        "loud": True,
        "mode": "slow",
        "colour": "blue",
        "limit": None,
    }
    page.assert_clean()


def test_a_tqdm_bar_moves_the_card(open_page: Callable[..., JobPage]) -> None:
    """tqdm_only never calls ctx: its card follows the bar it loops over."""
    page = open_page()
    job_id = page.start("tqdm_only", items="300", pause_ms="20")
    page.wait_running(job_id)
    seen = page.step_text(job_id).inner_text()
    later = page.wait_step_change(job_id, seen)
    step, total = parse_step(later)
    assert total == 300
    assert 0 < step < total
    percent = page.card(job_id).get_by_test_id("job-percent").inner_text()
    assert 0 < int(percent.rstrip("%")) < 100
    expect(page.card(job_id).get_by_test_id("job-message")).to_have_text("Crunching")
    page.wait_status(job_id, "succeeded")
    expect(page.step_text(job_id)).to_have_text("300/300")
    expect(page.card(job_id).get_by_test_id("job-result")).to_have_text(f"{sum(range(300)):,}")
    page.assert_clean()


def elapsed_s(time_text: Locator) -> float:
    match = ELAPSED_RE.fullmatch(time_text.inner_text())
    assert match, time_text.inner_text()
    return float(match[1]) / (1000 if match[2] == "ms" else 1)


def test_a_silent_job_shows_how_long_it_has_run(open_page: Callable[..., JobPage]) -> None:
    """A job that reports nothing has no step, no total and no percent: its card says it runs, and
    for how long (from the runner's heartbeat)."""
    page = open_page()
    job_id = page.start("silent", seconds="5")
    card = page.card(job_id)
    page.wait_status(job_id, "running")
    time_text = card.get_by_test_id("job-time")
    expect(time_text).to_have_text(ELAPSED_RE)
    first = elapsed_s(time_text)
    expect(time_text).not_to_have_text(time_text.inner_text())
    assert elapsed_s(time_text) > first
    expect(page.step_text(job_id)).to_have_text("")
    expect(card.get_by_test_id("job-percent")).to_have_text("")
    page.wait_status(job_id, "succeeded")
    expect(time_text).to_have_text(re.compile(r"^took \d"))
    expect(card.get_by_test_id("job-result")).to_have_text("done")
    page.assert_clean()


def test_primes_runs_to_success_and_its_log_shows_params_and_messages(open_page: Callable[..., JobPage]) -> None:
    page = open_page()
    job_id = page.start("primes", limit="1000000", segments="20")
    card = page.card(job_id)
    expect(card.get_by_test_id("job-params")).to_have_text("limit=1,000,000 · segments=20")
    page.wait_status(job_id, "succeeded")
    expect(page.step_text(job_id)).to_have_text("20/20")
    expect(card.get_by_test_id("job-message")).to_have_text("78,498 primes below 1,000,001")
    expect(card.get_by_test_id("job-result")).to_have_text("limit=1,000,000 · primes=78,498")

    card.get_by_test_id("job-log-open").click()
    log = page.page.get_by_test_id("job-log")
    expect(log.get_by_role("heading")).to_have_text("Job log: Count primes")
    expect(log.get_by_test_id("job-log-param")).to_have_text(["limit1000000", "segments20"])
    rows = log.get_by_test_id("job-log-row")
    expect(rows.last.locator("td").nth(1)).to_have_text("succeeded")
    expect(rows.last.locator("td").nth(3)).to_have_text("78,498 primes below 1,000,001")
    page.assert_clean()


def test_text_stats_takes_a_long_text_and_its_log_shows_it_in_full(open_page: Callable[..., JobPage]) -> None:
    page = open_page()
    text = "the cat sat on the mat\n" + "and the dog sat on the log " * 20
    page.choose_type("text_stats")
    assert page.param("text").evaluate("el => el.tagName") == "TEXTAREA"
    job_id = page.start("text_stats", text=text, top="2", case="keep")
    card = page.card(job_id)
    expect(card.get_by_test_id("job-params")).to_contain_text('text="the cat sat on the mat')
    page.wait_status(job_id, "succeeded")
    expect(card.get_by_test_id("job-result")).to_contain_text(f"characters={len(text)} · words={len(text.split())}")

    card.get_by_test_id("job-log-open").click()
    shown = page.page.get_by_test_id("job-log").get_by_test_id("job-log-param").first
    expect(shown).to_have_text("text" + text)
    page.assert_clean()


def test_a_job_started_with_the_keyboard(open_page: Callable[..., JobPage]) -> None:
    """Tab from the picker to the first field, type, Enter: the form is submitted."""
    page = open_page()
    page.page.get_by_test_id("job-type").focus()
    page.page.keyboard.press("Tab")
    expect(page.param("n")).to_be_focused()
    page.page.keyboard.type("40")

    def press_enter() -> None:
        page.page.keyboard.press("Enter")

    job_id = page.new_card(press_enter)
    expect(page.card(job_id).get_by_test_id("job-params")).to_have_text("n=40")
    page.wait_status(job_id, "succeeded")
    page.assert_clean()


def test_run_again_starts_a_new_job_with_the_same_params(open_page: Callable[..., JobPage], c: Clients) -> None:
    page = open_page()
    first = page.start("text_stats", text="one two two", top="2", pause_ms="300")  # about a second
    card = page.card(first)
    expect(card.get_by_test_id("job-cancel")).to_have_count(1)
    expect(card.get_by_test_id("job-rerun")).to_have_count(0)  # not while it runs
    page.wait_status(first, "succeeded")
    again = page.new_card(lambda: card.get_by_test_id("job-rerun").click())
    assert again != first
    assert page.card_ids()[:2] == [again, first]  # the new card comes first; the old one stays
    page.wait_status(again, "succeeded")
    old, new = service.get_job(first, c), service.get_job(again, c)
    assert (new.job_type, new.params, new.result, new.owner) == (old.job_type, old.params, old.result, old.owner)
    page.assert_clean()


def test_screenshot_of_every_field(open_page: Callable[..., JobPage], c: Clients) -> None:
    """A picture of the form with every kind of field and a refusal, and of cards of each kind."""
    page = open_page()
    page.start("primes", limit="3000000", segments="30")
    page.start("silent", seconds="4")  # it sees no cancel: the test's end waits for it
    page.choose_type("every_field")
    page.unguard()
    page.set_params(count="12")
    page.page.get_by_test_id("job-submit").click()
    expect(page.param_error("count")).to_be_visible()
    page.page.screenshot(path=Path(c.settings.run_dir) / "screenshot-types.png", full_page=True)
    page.assert_clean()
