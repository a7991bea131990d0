"""The console's Jobs tab: every owner's jobs from the history store (tasks.ops.jobs.list_jobs), a
page of twenty at a time, newest first, filtered by status and type and searched by id prefix; each
row cancels its job or runs it again. Cursors stay on the server, as in the owner's History tab."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime

import reflex as rx

from rxapp.jobview import format_seconds
from rxapp.state.ops_gate import operator_session
from tasks import service
from tasks.clients import clients
from tasks.model import (
    InvalidInput,
    JobNotFound,
    JobStatus,
    JobStillRunning,
    QueueFull,
    ServiceUnavailable,
    TooManyJobs,
    TooManySubmits,
)
from tasks.ops import jobs as ops_jobs

OPS_PAGE = 20
STATUS_FILTERS: dict[str, frozenset[JobStatus]] = {
    "all": frozenset(),
    **{status.value: frozenset({status}) for status in JobStatus},
}
UNREADABLE = "The job history cannot be read right now; the list shows again once it can."
# Why a run again may be refused (the owner's limits, a type gone, still running), as in ops_jobs.rerun_failed.
RERUN_REFUSALS = (
    TooManySubmits,
    TooManyJobs,
    QueueFull,
    InvalidInput,
    JobNotFound,
    JobStillRunning,
    ServiceUnavailable,
)
BAD_PREFIX = "Search by the start of a job id: hex digits and dashes."
Cursor = tuple[float, str]


@dataclasses.dataclass
class OpsRow:
    job_id: str = ""
    type: str = ""
    owner: str = ""
    params: str = ""
    status: str = ""
    step_text: str = ""
    percent: int = 0
    started_text: str = ""
    duration_text: str = ""
    cancellable: bool = False
    finished: bool = False


def ops_row(job: ops_jobs.OpsJob) -> OpsRow:
    started = (
        datetime.datetime.fromtimestamp(job.started_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        if job.started_at
        else ""
    )
    return OpsRow(
        job_id=job.job_id,
        type=job.type,
        owner=job.owner or "",
        params=job.params or "",
        status=job.status.value,
        step_text=f"{job.step:,}/{job.total:,}" if job.total else f"{job.step:,}",
        percent=min(100, int(100 * job.step / job.total)) if job.total else 0,
        started_text=started,
        duration_text="" if job.duration is None else format_seconds(job.duration),
        cancellable=not job.status.finished,
        finished=job.status.finished,
    )


class OpsJobsState(rx.State):
    """One page of every owner's jobs, its filters, and where the pages before it started."""

    rows: list[OpsRow] = []
    status_filter: str = "all"
    type_filter: str = "all"
    id_prefix: str = ""
    types: list[str] = []
    page_number: int = 1
    has_older: bool = False
    loaded: bool = False
    error: str = ""
    notice: str = ""
    _starts: list[Cursor | None] = [None]
    _next: Cursor | None = None
    # The jobs listed now: the only ones the rows' buttons act on.
    _listed: set[str] = set()

    def _lists(self, job_id: str) -> bool:
        return job_id in self._listed

    async def _first_page(self) -> None:
        """The first page with the filters as they are (the tab opened, or the page loaded: OpsState reads
        it within its own event, which checked the session)."""
        self.types = ["all", *sorted(clients().catalog)]
        await self._load([None])

    @rx.event
    async def filter_status(self, value: str):
        if await operator_session(self) is None or value not in STATUS_FILTERS:
            return
        self.status_filter = value
        await self._load([None])

    @rx.event
    async def filter_type(self, value: str):
        if await operator_session(self) is None or (value != "all" and value not in clients().catalog):
            return
        self.type_filter = value
        await self._load([None])

    @rx.event
    async def search(self, prefix: str):
        if await operator_session(self) is None:
            return
        try:
            self.id_prefix = ops_jobs.check_id_prefix(prefix) if prefix.strip() else ""
        except InvalidInput:
            self.error = BAD_PREFIX
            return
        await self._load([None])

    @rx.event
    async def older(self):
        if await operator_session(self) is not None and self._next is not None:
            await self._load([*self._starts, self._next])

    @rx.event
    async def newer(self):
        if await operator_session(self) is not None and len(self._starts) > 1:
            await self._load(self._starts[:-1])

    async def _refresh(self) -> None:
        """The page shown, read again (the refresh loop's call: it checked the session)."""
        await self._load(self._starts)

    async def _load(self, starts: list[Cursor | None]) -> None:
        statuses = STATUS_FILTERS[self.status_filter]
        job_type = None if self.type_filter == "all" else self.type_filter
        try:
            # One more than a page: whether there is an older one.
            jobs = await asyncio.to_thread(
                ops_jobs.list_jobs, clients(), statuses, job_type, self.id_prefix or None, starts[-1], OPS_PAGE + 1
            )
        except ServiceUnavailable:
            self.error, self.loaded = UNREADABLE, True
            return
        shown = jobs[:OPS_PAGE]
        self.has_older = len(jobs) > OPS_PAGE
        self._next = (shown[-1].started_at or 0.0, shown[-1].job_id) if self.has_older else None
        self._starts, self.page_number = starts, len(starts)
        self.rows = [ops_row(job) for job in shown]
        self._listed = {job.job_id for job in shown}
        self.error, self.loaded = "", True

    @rx.event
    async def cancel(self, job_id: str):
        """Stop a listed job (any owner's: the operator may)."""
        if await operator_session(self) is None or job_id not in self._listed:
            return
        try:
            state = await asyncio.to_thread(service.cancel_job, job_id, clients())
        except (JobNotFound, ServiceUnavailable) as exc:
            self.notice = f"Not cancelled: {exc or 'the job is gone'}."
            return
        self.notice = f"Job {job_id[:8]} is {state.status.value}."
        await self._refresh()

    @rx.event
    async def rerun(self, job_id: str):
        """Run a listed finished job again, as a new job of its owner's (within that owner's limits)."""
        if await operator_session(self) is None or job_id not in self._listed:
            return
        try:
            new = await asyncio.to_thread(rerun_for_owner, job_id)
        except RERUN_REFUSALS as exc:
            self.notice = f"Not run again: {exc or 'the job is gone'}."
            return
        self.notice = f"Job {job_id[:8]} runs again as {new[:8]}."
        await self._refresh()


def rerun_for_owner(job_id: str) -> str:
    """Run the stored job again for its owner (as the bulk action does); the new job's id."""
    c = clients()
    stored = c.history.job(job_id)
    if stored is None:
        raise JobNotFound(job_id)
    return service.rerun_job(job_id, c, stored.owner).job_id
