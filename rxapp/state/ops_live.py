"""The console's Workers and Charts tabs: each worker with its heartbeat, the queue and the jobs
waiting longest (tasks.ops.workers), and the last hour minute by minute (tasks.ops.stats)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from typing import Any

import reflex as rx

from rxapp.jobview import format_seconds
from tasks.clients import clients
from tasks.model import FINISHED, ServiceUnavailable
from tasks.ops import stats as ops_stats
from tasks.ops import workers as ops_workers

UNREADABLE = "Redis or the history store cannot be read right now; this shows again once they can."
CHART_MINUTES = 60
FINISHED_KEYS = tuple(sorted(status.value for status in FINISHED))


@dataclasses.dataclass
class WorkerRow:
    name: str = ""
    host: str = ""
    pid: int = 0
    concurrency: int = 0
    running: int = 0
    last_seen_text: str = ""
    status: str = ""


@dataclasses.dataclass
class WaitingRow:
    job_id: str = ""
    type: str = ""
    owner: str = ""
    waiting_text: str = ""


def ago(ts: float, now: float) -> str:
    return format_seconds(max(0.0, now - ts)) + " ago"


def chart_point(point: ops_stats.Minute) -> dict[str, Any]:
    """A minute as the charts read it: its time (UTC, HH:MM) and its figures."""
    return {
        "time": datetime.datetime.fromtimestamp(point.minute, datetime.UTC).strftime("%H:%M"),
        **point.finished,
        "steps_per_s": point.steps_per_s,
        "queue_depth": point.queue_depth,
    }


class OpsLiveState(rx.State):
    workers: list[WorkerRow] = []
    queue_depth: int = 0
    waiting: list[WaitingRow] = []
    points: list[dict[str, Any]] = []
    workers_loaded: bool = False
    error: str = ""

    @rx.var
    def finished_last_hour(self) -> int:
        return sum(int(v) for point in self.points for k, v in point.items() if k in FINISHED_KEYS and v)

    async def _read_workers(self) -> None:
        try:
            found = await asyncio.to_thread(ops_workers.list_workers, clients())
        except ServiceUnavailable:
            self.error = UNREADABLE
            return
        now = time.time()
        self.workers = [
            WorkerRow(w.name, w.host, w.pid, w.concurrency, len(w.running), ago(w.last_seen, now), w.status)
            for w in found.workers
        ]
        self.queue_depth = found.queue_depth
        self.waiting = [
            WaitingRow(j.job_id, j.type or "", j.owner or "", format_seconds(j.waiting_s))
            for j in found.longest_waiting
        ]
        self.error, self.workers_loaded = "", True

    async def _read_stats(self) -> None:
        try:
            minutes = await asyncio.to_thread(ops_stats.stats, clients(), CHART_MINUTES)
        except ServiceUnavailable:
            self.error = UNREADABLE
            return
        self.points = [chart_point(point) for point in minutes]
        self.error = ""
