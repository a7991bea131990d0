"""The log of one of this browser's jobs, as its Kafka topic holds it: its states and the lines it
logged (or the lines only), a page at a time, under the job's params in full; at the end of a
running job's log, new records come in as the job writes them."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
from typing import Any

import reflex as rx

from rxapp.jobview import type_title
from rxapp.session import page_owner
from rxapp.state.history import on_page
from tasks import service
from tasks.clients import clients
from tasks.joblog import LogPage
from tasks.model import JobNotFound, JobState, LineKind, LogLine, Record, ServiceUnavailable

# Records per page: enough to scroll, small enough to send at once.
LOG_PAGE = 100
# Following a running job: how often its log is read again, and how many records stay shown.
FOLLOW_S = 0.5
FOLLOW_MAX_ROWS = 500
LINES = frozenset({LineKind.LOG, LineKind.ERROR})


@dataclasses.dataclass
class LogRow:
    kind: str = LineKind.STATE.value
    step: int = 0
    status: str = ""  # a state's status, a line's level
    time_text: str = ""  # UTC, to the millisecond
    message: str = ""


@dataclasses.dataclass
class ParamLine:
    name: str = ""
    value: str = ""  # a text as it is, anything else as JSON


def log_row(record: Record) -> LogRow:
    at = datetime.datetime.fromtimestamp(record.ts, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]
    if isinstance(record, LogLine):
        return LogRow(record.kind.value, record.step, record.level, at, record.message)
    return LogRow(LineKind.STATE.value, record.step, record.status.value, at, record.message or "")


def param_lines(params: dict[str, Any]) -> list[ParamLine]:
    return [
        ParamLine(name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for name, value in params.items()
    ]


def ends_job(page: LogPage) -> bool:
    """Whether the page holds the job's final record."""
    return any(isinstance(record, JobState) and record.status.finished for record in page.records)


class LogState(rx.State):
    """The log dialog: which job, its type and params, the filter, the records shown, and where the
    next ones start."""

    job_id: str = ""
    title: str = ""
    params: list[ParamLine] = []
    rows: list[LogRow] = []
    lines_only: bool = False
    at_start: bool = True  # the first row shown is the log's first record (of the filter's kinds)
    next_offset: int = 0
    end: bool = True
    # The dialog reached the end of a running job's log, and follows it.
    live: bool = False
    error: str = ""
    # The job has finished: its log grows no more.
    _finished: bool = False
    # The job whose log a `follow` task reads now, if any.
    _following: str = ""
    # Whose job it is: the page's owner when it opened (every read checks it).
    _owner: str = ""

    @rx.event
    async def open(self, job_id: str):
        """Show the first page of the log of `job_id`, if it is one of this browser's jobs; follow
        it while it runs."""
        owner = page_owner(self)
        if owner is None or not await on_page(self, job_id):
            return None
        self.job_id, self._owner = job_id, owner
        try:  # the job's state holds its params, whether it has a log yet or not
            state = await asyncio.to_thread(service.get_job, job_id, clients(), owner)
        except (JobNotFound, ServiceUnavailable):
            self.title, self.params, self._finished = "", [], True  # the log's read says what is wrong
        else:
            self.title, self.params = type_title(state.job_type), param_lines(state.params or {})
            self._finished = state.status.finished
        await self._read(0)
        return LogState.follow

    @rx.event
    async def next_page(self):
        if self.job_id and not self.end:
            await self._read(self.next_offset)
            return LogState.follow
        return None

    @rx.event
    async def first_page(self):
        return await self._from_start()

    @rx.event
    async def show_lines_only(self, lines_only: bool):
        """The filter: the job's lines only, or its states and lines together."""
        self.lines_only = bool(lines_only)
        return await self._from_start()

    async def _from_start(self):
        if not self.job_id:
            return None
        await self._read(0)
        return LogState.follow

    @rx.event
    def set_open(self, is_open: bool):
        """The dialog opened or closed itself (its close button, Escape, a click outside)."""
        if not is_open:
            self.job_id, self.title, self.params, self.rows, self.error, self.live = "", "", [], [], "", False

    @rx.event(background=True)
    async def follow(self):
        """While the dialog is `live`, add the job's new records as they come (keeping the last
        FOLLOW_MAX_ROWS); ends with the job, or when the dialog closes or pages back."""
        async with self:
            job_id = self.job_id
            if not self.live or self._following == job_id:
                return
            self._following = job_id
        caught_up = True
        try:
            while True:
                if caught_up:
                    await asyncio.sleep(FOLLOW_S)
                async with self:
                    if self.job_id != job_id or not self.live:
                        return
                    offset, kinds, owner = self.next_offset, self._kinds(), self._owner
                try:
                    page = await asyncio.to_thread(
                        service.read_log, job_id, offset, FOLLOW_MAX_ROWS, clients(), kinds, owner
                    )
                except (JobNotFound, ServiceUnavailable):
                    continue  # the next read says, or the dialog's next page does
                caught_up = page.end
                async with self:
                    if self.job_id != job_id or self.next_offset != offset or self._kinds() != kinds:
                        continue  # the dialog moved on meanwhile
                    rows = self.rows + [log_row(record) for record in page.records]
                    self.at_start = self.at_start and len(rows) <= FOLLOW_MAX_ROWS
                    self.rows = rows[-FOLLOW_MAX_ROWS:]
                    self.next_offset, self.end = page.next_offset, page.end
                    self._finished = self._finished or ends_job(page)
                    self.live = not self._finished
        finally:
            async with self:
                if self._following == job_id:
                    self._following = ""

    def _kinds(self) -> frozenset[LineKind] | None:
        return LINES if self.lines_only else None

    async def _read(self, offset: int) -> None:
        try:
            page = await asyncio.to_thread(
                service.read_log, self.job_id, offset, LOG_PAGE, clients(), self._kinds(), self._owner
            )
        except JobNotFound:
            self.rows, self.end = [], True
            self.error = "This job's log is gone: it was deleted after the retention period."
            return
        except ServiceUnavailable as exc:
            self.error = str(exc)
            return
        self.rows = [log_row(record) for record in page.records]
        self.at_start, self.next_offset, self.end, self.error = offset == 0, page.next_offset, page.end, ""
        self._finished = self._finished or ends_job(page)
        self.live = page.end and not self._finished
