"""The operator's view of a listed job's log (any owner's), a page at a time, read with
service.read_log as the owner's dialog reads it; rows as rxapp.state.log makes them."""

from __future__ import annotations

import asyncio

import reflex as rx

from rxapp.state.log import LOG_PAGE, LogRow, log_row
from rxapp.state.ops_gate import operator_session
from rxapp.state.ops_jobs import OpsJobsState
from tasks import service
from tasks.clients import clients
from tasks.model import JobNotFound, ServiceUnavailable


class OpsLogState(rx.State):
    job_id: str = ""
    rows: list[LogRow] = []
    next_offset: int = 0
    end: bool = True
    error: str = ""

    @rx.event
    async def open(self, job_id: str):
        """The first page of a listed job's log."""
        if await operator_session(self) is None or not (await self.get_state(OpsJobsState))._lists(job_id):
            return
        self.job_id, self.rows = job_id, []
        await self._read(0)

    @rx.event
    async def next_page(self):
        if await operator_session(self) is not None and self.job_id and not self.end:
            await self._read(self.next_offset)

    @rx.event
    def set_open(self, is_open: bool):
        if not is_open:
            self.job_id, self.rows, self.error = "", [], ""

    async def _read(self, offset: int) -> None:
        try:
            page = await asyncio.to_thread(service.read_log, self.job_id, offset, LOG_PAGE, clients())
        except JobNotFound:
            self.rows, self.end, self.error = (
                [],
                True,
                "This job's log is gone: it was deleted after the retention period.",
            )
            return
        except ServiceUnavailable as exc:
            self.error = str(exc)
            return
        self.rows = [log_row(record) for record in page.records]
        self.next_offset, self.end, self.error = page.next_offset, page.end, ""
