"""What a job card shows, computed from a job's state: its type and params, percent, rate, ETA or
elapsed time, duration, its progress message and result."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

from tasks.clients import clients
from tasks.model import JobState, JobStatus

APP_TITLE = "Jobstream"
# A card's line of params, or of the result, is cut to this length; a long value in it to less.
SUMMARY_MAX_CHARS = 80
VALUE_MAX_CHARS = 30
# A text shown without quotes: a word, a number, a name.
BARE_RE = re.compile(r"[\w.:/+-]{1,30}")


@dataclasses.dataclass
class JobView:
    job_id: str = ""
    status: JobStatus = JobStatus.QUEUED
    step: int = 0
    total: int = 0
    percent: float = 0.0
    step_text: str = ""
    percent_text: str = ""
    rate_text: str = ""
    eta_text: str = ""
    duration_text: str = ""
    error: str = ""
    cancellable: bool = True
    submitted_at: float = 0.0
    title: str = ""
    params_text: str = ""
    message: str = ""
    result_text: str = ""
    line: str = ""  # the last line the job logged
    queue_text: str = ""  # a queued job's place in line and estimated start
    # The result itself is read only when its dialog opens (rxapp/state/result.py).
    has_result: bool = False
    # Running without a known total: the bar moves without a percent.
    indeterminate: bool = False


def format_seconds(seconds: float) -> str:
    """'850 ms', '12.3 s', '4 min 05 s', '2 h 03 min'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_rate(steps_per_s: float) -> str:
    if steps_per_s >= 10_000:
        return f"{steps_per_s / 1000:,.0f}k steps/s"
    return f"{steps_per_s:,.1f} steps/s" if steps_per_s < 100 else f"{steps_per_s:,.0f} steps/s"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value_text(value: Any) -> str:
    """One value, short: 1000, 10,000,000, 0.5, true, fast, "two words", [1,2,3]."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and BARE_RE.fullmatch(value):
        return value
    if isinstance(value, str):
        return json.dumps(_cut(value, VALUE_MAX_CHARS - 2), ensure_ascii=False)
    return _cut(json.dumps(value, separators=(",", ":"), ensure_ascii=False), VALUE_MAX_CHARS)


def summary(value: Any) -> str:
    """Params or a result on one line of a card: `limit=10,000,000 · segments=100` (what is None
    is left out: it says nothing)."""
    if isinstance(value, dict):
        text = " · ".join(f"{name}={value_text(item)}" for name, item in value.items() if item is not None)
    else:
        text = value_text(value)
    return _cut(text, SUMMARY_MAX_CHARS)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 1,002nd."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def queue_text(state: JobState) -> str:
    """'next in line · starts in about 12.0 s', '3rd in line', '' when not known to be in line."""
    if state.queue_position is None:
        return ""
    place = "next in line" if state.queue_position == 1 else f"{ordinal(state.queue_position)} in line"
    if state.starts_in is None:
        return place
    return f"{place} · starts in about {format_seconds(max(state.starts_in, 1.0))}"


def type_title(job_type: str) -> str:
    """The title of a job type; its name when the catalog no longer has it."""
    job = clients().catalog.get(job_type)
    return job.title if job is not None else job_type


def job_view(state: JobState, before: JobView | None = None) -> JobView:
    """The card of a job in `state` (`before`: its card until now, which keeps what states in
    between leave out: the params, the submit time). Rate and ETA while running, or the elapsed
    time when the job has not said how many steps it has; duration once finished."""
    if state.status is JobStatus.QUEUED and before is not None and before.status is JobStatus.QUEUED:
        # Still waiting: only its place in line can have changed (the hub's updates carry no more).
        return dataclasses.replace(before, queue_text=queue_text(state) or before.queue_text)
    succeeded = state.status is JobStatus.SUCCEEDED
    percent = 100.0 * state.step / state.total if state.total else 100.0 if succeeded else 0.0
    elapsed = state.ts - state.started_at if state.started_at else 0.0
    rate = state.step / elapsed if elapsed > 0 and state.step else 0.0
    running = state.status is JobStatus.RUNNING
    if state.total:
        step_text = f"{state.step:,}/{state.total:,}"
        percent_text = f"{percent:.0f}%" if percent >= 1 or not percent else f"{percent:.1f}%"
    else:
        step_text, percent_text = f"step {state.step:,}" if state.step else "", ""
    view = JobView(
        job_id=state.job_id,
        status=state.status,
        step=state.step,
        total=state.total,
        percent=round(percent, 2),
        step_text=step_text,
        percent_text=percent_text,
        error=state.error or "",
        cancellable=not state.status.finished,
        # A recovered job's submit time is not kept: when it started comes closest.
        submitted_at=(before.submitted_at if before else 0.0) or state.started_at or state.ts,
        title=before.title if before else type_title(state.job_type),
        params_text=summary(state.params) if state.params is not None else before.params_text if before else "",
        message=state.message or "",
        line=state.line or (before.line if before else ""),
        queue_text=queue_text(state) if state.status is JobStatus.QUEUED else "",
        result_text=summary(state.result) if succeeded and state.result is not None else "",
        has_result=succeeded and state.result is not None,
        indeterminate=running and not state.total,
    )
    if running and rate:
        view.rate_text = format_rate(rate)
    if running and state.total and rate:
        view.eta_text = "ETA " + format_seconds((state.total - state.step) / rate)
    elif running and not state.total and state.started_at:
        view.eta_text = "running for " + format_seconds(elapsed)
    elif state.status.finished and state.started_at:
        view.duration_text = "took " + format_seconds(elapsed)
        if rate:
            view.rate_text = format_rate(rate)
    return view


def page_title(jobs: Iterable[JobView]) -> str:
    """The page's title: "42% · Jobstream" while jobs run (all their steps over all their totals,
    of those that have said how many steps they have), "running · Jobstream" while none has."""
    running = [job for job in jobs if job.status == JobStatus.RUNNING]
    totals = sum(job.total for job in running if job.total)
    if totals:
        steps = sum(min(job.step, job.total) for job in running if job.total)
        return f"{100 * steps // totals}% · {APP_TITLE}"
    return f"running · {APP_TITLE}" if running else APP_TITLE
