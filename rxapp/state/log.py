"""The log of one of this browser's jobs, a page at a time, as its Kafka topic holds it, under the
job's params in full."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
from typing import Any

import reflex as rx

from rxapp.jobview import type_title
from rxapp.state.jobs import JobsState
from tasks import service
from tasks.clients import clients
from tasks.model import JobNotFound, JobState, ServiceUnavailable

# Records per page: enough to scroll, small enough to send at once.
LOG_PAGE = 100


@dataclasses.dataclass
class LogLine:
    step: int = 0
    status: str = ""
    time_text: str = ""  # UTC, to the millisecond
    message: str = ""


@dataclasses.dataclass
class ParamLine:
    name: str = ""
    value: str = ""  # a text as it is, anything else as JSON


def log_line(record: JobState) -> LogLine:
    at = datetime.datetime.fromtimestamp(record.ts, datetime.UTC)
    return LogLine(record.step, record.status.value, at.strftime("%H:%M:%S.%f")[:-3], record.message or "")


def param_lines(params: dict[str, Any]) -> list[ParamLine]:
    return [
        ParamLine(name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for name, value in params.items()
    ]


class LogState(rx.State):
    """The log dialog: which job, its type and params, the page shown, and where the next one starts."""

    job_id: str = ""
    title: str = ""
    params: list[ParamLine] = []
    lines: list[LogLine] = []
    offset: int = 0
    next_offset: int = 0
    end: bool = True
    error: str = ""

    @rx.event
    async def open(self, job_id: str):
        """Show the first page of the log of `job_id`, if it is one of this browser's jobs."""
        jobs = await self.get_state(JobsState)
        if job_id not in jobs._job_ids():
            return
        self.job_id = job_id
        try:  # the job's state holds its params, whether it has a log yet or not
            state = await asyncio.to_thread(service.get_job, job_id, clients())
        except (JobNotFound, ServiceUnavailable):
            self.title, self.params = "", []  # the log's read says what is wrong
        else:
            self.title, self.params = type_title(state.job_type), param_lines(state.params or {})
        await self._read(0)

    @rx.event
    async def next_page(self):
        if self.job_id and not self.end:
            await self._read(self.next_offset)

    @rx.event
    async def first_page(self):
        if self.job_id:
            await self._read(0)

    @rx.event
    def set_open(self, is_open: bool):
        """The dialog opened or closed itself (its close button, Escape, a click outside)."""
        if not is_open:
            self.job_id, self.title, self.params, self.lines, self.error = "", "", [], [], ""

    async def _read(self, offset: int) -> None:
        try:
            page = await asyncio.to_thread(service.read_log, self.job_id, offset, LOG_PAGE, clients())
        except JobNotFound:
            self.lines, self.end = [], True
            self.error = "This job's log is gone: it was deleted after the retention period."
            return
        except ServiceUnavailable as exc:
            self.error = str(exc)
            return
        self.lines = [log_line(record) for record in page.records]
        self.offset, self.next_offset, self.end, self.error = offset, page.next_offset, page.end, ""
