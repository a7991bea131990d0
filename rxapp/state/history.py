"""The owner's past jobs, from the history store: a page of them at a time, newest first, filtered
by status; each opens its log and result and runs again after the live list no longer shows it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime

import reflex as rx
from reflex.event import EventHandler, EventSpec

from rxapp.jobview import job_view
from rxapp.session import page_owner
from rxapp.state.jobs import NO_SESSION, JobsState
from tasks import service
from tasks.clients import clients
from tasks.model import JobState, JobStatus, ServiceUnavailable

# Jobs on one page of the history: fixed here, whatever a page sends.
HISTORY_PAGE = 20
# The status filter's choices and the statuses each lists (none: every status).
FILTERS: dict[str, frozenset[JobStatus]] = {
    "all": frozenset(),
    **{
        status.value: frozenset({status})
        for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.RUNNING)
    },
}
TABS = ("jobs", "history")
UNREADABLE = "The job history cannot be read right now; please try again in a moment."
Cursor = tuple[float, str]


@dataclasses.dataclass
class HistoryRow:
    job_id: str = ""
    status: str = ""
    title: str = ""
    params_text: str = ""
    step_text: str = ""
    started_text: str = ""  # UTC, to the second
    time_text: str = ""  # how long it took, or has run
    has_result: bool = False
    finished: bool = False


def history_row(state: JobState) -> HistoryRow:
    view = job_view(state)
    started = datetime.datetime.fromtimestamp(state.started_at or state.ts, datetime.UTC)
    return HistoryRow(
        job_id=state.job_id,
        status=state.status.value,
        title=view.title,
        params_text=view.params_text,
        step_text=view.step_text,
        started_text=started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        time_text=view.duration_text or view.eta_text,
        has_result=view.has_result,
        finished=state.status.finished,
    )


class HistoryState(rx.State):
    """Which tab the page shows, and the History tab: one page of the owner's jobs, its filter, and
    where the pages before it started (cursors stay on the server: the page only says older or newer)."""

    tab: str = TABS[0]
    rows: list[HistoryRow] = []
    status_filter: str = "all"
    page_number: int = 1
    has_older: bool = False
    loaded: bool = False
    error: str = ""
    # Where each page up to the one shown starts (None: the newest job), and where the next would.
    _starts: list[Cursor | None] = [None]
    _next: Cursor | None = None
    # The jobs listed now: the only ones the rows' buttons act on.
    _listed: set[str] = set()
    _finished: set[str] = set()

    def _lists(self, job_id: str) -> bool:
        return job_id in self._listed

    @rx.var
    def empty_text(self) -> str:
        if self.status_filter == "all":
            return "No finished jobs yet."
        return f"No {self.status_filter} jobs."

    @rx.event
    async def show_tab(self, tab: str):
        """Switch tabs; opening History reads its first page (only then: it costs a query)."""
        if tab not in TABS:
            return
        self.tab = tab
        if tab == "history":
            await self._load([None])

    @rx.event
    async def filter_by(self, status_filter: str):
        """Show one of FILTERS (anything else is ignored), from its newest job."""
        if status_filter in FILTERS:
            self.status_filter = status_filter
            await self._load([None])

    @rx.event
    async def older(self):
        """The next page, of older jobs (where the page shown ends: kept here, not sent by the page)."""
        if self._next is not None:
            await self._load([*self._starts, self._next])

    @rx.event
    async def newer(self):
        if len(self._starts) > 1:
            await self._load(self._starts[:-1])

    @rx.event
    async def refresh(self):
        """Read the page shown again (jobs that ended or started since)."""
        await self._load(self._starts)

    async def _load(self, starts: list[Cursor | None]) -> None:
        """Read the page that starts at starts[-1], for the page's owner only."""
        owner = page_owner(self)
        if owner is None:
            self.error = NO_SESSION
            return
        statuses = FILTERS[self.status_filter]
        try:
            # One more than a page: whether there is an older one.
            states = await asyncio.to_thread(
                service.job_history, owner, clients(), statuses, None, starts[-1], HISTORY_PAGE + 1
            )
        except ServiceUnavailable:
            self.error, self.rows, self.loaded, self._listed, self._finished = UNREADABLE, [], True, set(), set()
            return
        shown = states[:HISTORY_PAGE]
        self.has_older = len(states) > HISTORY_PAGE
        self._next = (shown[-1].started_at or shown[-1].ts, shown[-1].job_id) if self.has_older else None
        self._starts, self.page_number = starts, len(starts)
        self.rows = [history_row(state) for state in shown]
        self._listed = {state.job_id for state in shown}
        self._finished = {state.job_id for state in shown if state.status.finished}
        self.error, self.loaded = "", True

    @rx.event
    async def rerun(self, job_id: str):
        """Run a finished job of this page of the history again; its new card shows in the live list,
        which the page then shows."""
        owner = page_owner(self)
        if owner is None or job_id not in self._finished:
            return None
        jobs = await self.get_state(JobsState)
        events: list[EventSpec | EventHandler] = await jobs._rerun(job_id, owner) or []
        if jobs.error:
            self.error = jobs.error
            return None
        self.tab = "jobs"
        return events


async def on_page(state: rx.State, job_id: str) -> bool:
    """Whether `job_id` is one of the page's cards or a row of the history page it shows: the only
    jobs its dialogs open (the service still checks the owner)."""
    jobs = await state.get_state(JobsState)
    history = await state.get_state(HistoryState)
    return job_id in jobs._job_ids() or history._lists(job_id)
