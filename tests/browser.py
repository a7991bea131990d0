"""A driver for the job page's stable hooks (data-testid) in the page tests."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from playwright.sync_api import Dialog, Locator, Page, WebSocketRoute, expect

# Generous: the machine's two cores are shared with benchmarks and other suites.
TIMEOUT_S = 20
STEP_RE = re.compile(r"^([\d,]+)/([\d,]+)$")
# A Socket.IO event packet on the page's socket: its head (type, namespace, ack id), then JSON.
EVENT_PACKET_RE = re.compile(r"^(\d+/_event,\d*)(\[.*\])$", re.DOTALL)
SUBMIT_EVENT = "jobs_state.submit"


def parse_step(text: str) -> tuple[int, int]:
    """'1,234/1,500' -> (1234, 1500)."""
    match = STEP_RE.fullmatch(text.strip())
    assert match, f"step text {text!r} is not 'step/total'"
    return int(match[1].replace(",", "")), int(match[2].replace(",", ""))


def with_form_values(packet: str, values: dict[str, str]) -> str:
    """The submit event `packet` with `values` in place of the form's (or added to it)."""
    match = EVENT_PACKET_RE.fullmatch(packet)
    assert match, packet[:200]
    event = json.loads(match[2])
    entries = event[1]["payload"]["form_data"]["__reflex_form_data__"]
    kept = [[name, value] for name, value in entries if name not in values]
    event[1]["payload"]["form_data"]["__reflex_form_data__"] = kept + [[name, value] for name, value in values.items()]
    return match[1] + json.dumps(event)


def swap_job_id(page: Page, events: tuple[str, ...], mine: list[str], theirs: str) -> tuple[list[str], list[str]]:
    """Route the page's socket so that an event named in `events` that carries the page's job mine[0]
    (while `mine` holds it) carries `theirs` instead, as a client that is not a browser could send it.
    Returns the messages so forged and every message the page received, both filled as they come."""
    forged: list[str] = []
    received: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            received.append(message if isinstance(message, str) else message.decode(errors="replace"))
            ws.send(message)

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and mine and mine[0] in message and any(e in message for e in events):
                message = message.replace(mine[0], theirs)
                forged.append(message)
            server.send(message)

        server.on_message(to_page)
        ws.on_message(to_server)

    page.route_web_socket(re.compile(r"/_event"), route)
    return forged, received


class JobPage:
    """The page `/` in one tab, driven only through its data-testid hooks; it records page errors."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.submitted: list[str] = []
        self.forged: dict[str, str] | None = None  # see send_instead
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self) -> JobPage:
        self.page.goto(self.url)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Wait until the page has rendered its form's fields and its job list (or the "no jobs" line)."""
        expect(self.page.locator("[data-testid=job-fields] [name]").first).to_be_editable()
        self.page.wait_for_function(
            "() => document.querySelector('[data-testid=job-card]') !== null"
            " || document.body.innerText.includes('No jobs yet')"
        )

    @property
    def cards(self) -> Locator:
        return self.page.get_by_test_id("job-card")

    def card(self, job_id: str) -> Locator:
        return self.page.locator(f'[data-testid="job-card"][data-job-id="{job_id}"]')

    def status(self, job_id: str) -> Locator:
        return self.card(job_id).get_by_test_id("job-status")

    def step_text(self, job_id: str) -> Locator:
        return self.card(job_id).get_by_test_id("job-step")

    def card_ids(self) -> list[str]:
        """The ids of the cards shown, top to bottom, read in one go."""
        return self.cards.evaluate_all("cards => cards.map((card) => card.dataset.jobId)")

    def type_n(self, n: str) -> None:
        self.page.get_by_test_id("job-n-input").fill(n)
        self.page.get_by_test_id("job-submit").click()

    def submit(self, n: int | str) -> str:
        """Start a count job from the form; return the id of the card that appears for it."""
        return self.new_card(lambda: self.type_n(str(n)))

    def new_card(self, action: Callable[[], object]) -> str:
        """Do `action`, which starts a job; return the id of the card that appears for it."""
        before = set(self.card_ids())
        action()
        expect(self.cards).to_have_count(len(before) + 1)
        (new,) = set(self.card_ids()) - before
        self.submitted.append(new)
        return new

    def choose_type(self, job_type: str) -> None:
        """Pick a job type; returns once the form shows its fields."""
        self.page.get_by_test_id("job-type").select_option(job_type)
        expect(self.page.locator(f'[data-testid="job-fields"][data-job-type="{job_type}"]')).to_be_attached()

    def param(self, name: str) -> Locator:
        return self.page.get_by_test_id(f"param-{name}")

    def param_error(self, name: str) -> Locator:
        return self.page.get_by_test_id(f"param-error-{name}")

    def set_params(self, **values: str | bool) -> None:
        """Fill in the chosen type's fields: a bool (un)checks a box, a select takes an option."""
        for name, value in values.items():
            control = self.param(name)
            if isinstance(value, bool):
                control.set_checked(value)
            elif control.evaluate("el => el.tagName") == "SELECT":
                control.select_option(value)
            else:
                control.fill(value)

    def start(self, job_type: str, **values: str | bool) -> str:
        """Start a job of `job_type` with these field values; return its card's id."""
        self.choose_type(job_type)
        self.set_params(**values)
        return self.new_card(self.page.get_by_test_id("job-submit").click)

    def unguard(self) -> None:
        """Turn the browser's checks of the form (HTML bounds, patterns, `required`) off, so that
        what is typed reaches the server, which must refuse it itself."""
        self.page.evaluate("() => { document.querySelector('[data-testid=job-submit]').form.noValidate = true; }")

    def send_instead(self, **values: str) -> None:
        """From now on the page's submits carry `values` in place of what the form holds, as a
        client other than a browser could send them (text in a number field, say); no values:
        what the form holds. The first call reloads the page, so that its socket goes through
        the route that rewrites them."""
        first = self.forged is None
        self.forged = values
        if not first:
            return

        def route(ws: WebSocketRoute) -> None:
            server = ws.connect_to_server()

            def to_server(message: str | bytes) -> None:
                if isinstance(message, str) and SUBMIT_EVENT in message and self.forged:
                    message = with_form_values(message, self.forged)
                server.send(message)

            ws.on_message(to_server)

        self.page.route_web_socket(re.compile(r"/_event"), route)
        self.page.reload()
        self.wait_ready()

    def step(self, job_id: str) -> tuple[int, int]:
        return parse_step(self.step_text(job_id).inner_text())

    def wait_status(self, job_id: str, status: str, timeout_s: float = 90) -> None:
        expect(self.status(job_id)).to_have_text(status, timeout=timeout_s * 1000)

    def wait_step_change(self, job_id: str, seen: str, timeout_s: float = TIMEOUT_S) -> str:
        """Wait until the card's step text is no longer `seen`; return the new text."""
        expect(self.step_text(job_id)).not_to_have_text(seen, timeout=timeout_s * 1000)
        return self.step_text(job_id).inner_text()

    def wait_running(self, job_id: str, min_step: int = 1, timeout_s: float = 60) -> int:
        """Wait until the card shows the job running with at least `min_step` steps; return the step."""
        self.wait_status(job_id, "running", timeout_s)
        self.page.wait_for_function(
            """([id, min]) => {
                const el = document.querySelector(`[data-job-id="${id}"] [data-testid=job-step]`);
                return el !== null && parseInt(el.textContent.split('/')[0].replaceAll(',', '')) >= min;
            }""",
            arg=[job_id, min_step],
            timeout=timeout_s * 1000,
        )
        return self.step(job_id)[0]

    def wait_until(self, check: Callable[[], object], what: str, timeout_s: float = TIMEOUT_S) -> None:
        """Poll `check` while Playwright goes on serving this page's routes and events (a plain sleep
        would hold them back: the sync API dispatches them only inside its own calls)."""
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
            self.page.wait_for_timeout(20)

    def assert_clean(self) -> None:
        """No uncaught script error, no alert, no error toast (Reflex shows backend errors as one), no
        notice of a lost connection."""
        assert self.errors == [], f"page errors: {self.errors}"
        assert self.dialogs == [], f"dialogs: {self.dialogs}"
        expect(self.page.locator("[data-sonner-toast]")).to_have_count(0)
        expect(self.page.get_by_test_id("connection-lost")).to_have_count(0)
