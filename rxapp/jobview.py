"""What a job card shows, computed from a job's state: percent, rate, ETA, duration."""

from __future__ import annotations

import dataclasses

from tasks.model import JobState, JobStatus


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


def job_view(state: JobState, submitted_at: float = 0.0) -> JobView:
    """The card of a job in `state`; rate and ETA while running, duration once finished."""
    percent = 100.0 * state.step / state.total if state.total else 0.0
    elapsed = state.ts - state.started_at if state.started_at else 0.0
    rate = state.step / elapsed if elapsed > 0 and state.step else 0.0
    view = JobView(
        job_id=state.job_id,
        status=state.status,
        step=state.step,
        total=state.total,
        percent=round(percent, 2),
        step_text=f"{state.step:,}/{state.total:,}",
        percent_text=f"{percent:.0f}%" if percent >= 1 or not percent else f"{percent:.1f}%",
        error=state.error or "",
        cancellable=not state.status.finished,
        # A recovered job's submit time is not kept: when it started comes closest.
        submitted_at=submitted_at or state.started_at or state.ts,
    )
    if state.status is JobStatus.RUNNING and rate:
        view.rate_text = format_rate(rate)
        view.eta_text = "ETA " + format_seconds((state.total - state.step) / rate)
    elif state.status.finished and state.started_at:
        view.duration_text = "took " + format_seconds(elapsed)
        if rate:
            view.rate_text = format_rate(rate)
    return view
