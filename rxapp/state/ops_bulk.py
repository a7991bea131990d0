"""The console's bulk actions (tasks.ops.jobs): cancel every queued job of a type, run again every job
that failed in the last hour. Each first counts what it would touch and asks; only a confirmation
acts, and the page says what was done."""

from __future__ import annotations

import asyncio

import reflex as rx

from rxapp.state.ops_gate import operator_name, operator_session
from tasks.clients import clients
from tasks.model import InvalidInput, ServiceUnavailable
from tasks.ops import jobs as ops_jobs

RERUN_WINDOW_MINUTES = 60
ACTIONS = ("cancel-queued", "rerun-failed")


class OpsBulkState(rx.State):
    job_type: str = ""
    # The action the dialog asks about ("": closed), what it says, and what the last one did.
    asking: str = ""
    question: str = ""
    report: str = ""
    _asked_type: str = ""

    @rx.event
    async def set_type(self, job_type: str):
        if await operator_session(self) is not None and job_type in clients().catalog:
            self.job_type = job_type

    @rx.event
    async def ask(self, action: str):
        """Count what the action would touch and ask to confirm it."""
        if await operator_session(self) is None or action not in ACTIONS:
            return
        job_type = self.job_type or next(iter(sorted(clients().catalog)))
        try:
            if action == "cancel-queued":
                count = await asyncio.to_thread(ops_jobs.count_queued, clients(), job_type)
                question = f"Cancel {count} queued {job_type} jobs?"
            else:
                count = await asyncio.to_thread(ops_jobs.count_failed, clients(), RERUN_WINDOW_MINUTES)
                question = f"Run again {count} jobs that failed in the last hour?"
        except (InvalidInput, ServiceUnavailable) as exc:
            self.report = f"Nothing done: {exc}."
            return
        self.asking, self.question, self._asked_type = action, question, job_type

    @rx.event
    def dismiss(self, is_open: bool = False):
        if not is_open:
            self.asking, self.question = "", ""

    @rx.event
    async def confirm(self):
        """Do the action the dialog asked about (for the type it asked about)."""
        session_id = await operator_session(self)
        action, self.asking, self.question = self.asking, "", ""
        if session_id is None or action not in ACTIONS:
            return
        who = operator_name(session_id)
        try:
            if action == "cancel-queued":
                done = await asyncio.to_thread(ops_jobs.cancel_queued, clients(), self._asked_type, who)
                more = " More are queued: run it again." if done.more else ""
                self.report = f"Cancelled {len(done.cancelled)} queued {self._asked_type} jobs.{more}"
            else:
                rerun = await asyncio.to_thread(ops_jobs.rerun_failed, clients(), RERUN_WINDOW_MINUTES, who)
                self.report = (
                    f"Ran again {len(rerun.rerun)} failed jobs; {len(rerun.refused)} refused"
                    f" (their owners' limits); {len(rerun.already_rerun)} already run again."
                    + (" More failed: run it again." if rerun.more else "")
                )
        except (InvalidInput, ServiceUnavailable) as exc:
            self.report = f"Nothing done: {exc}."
