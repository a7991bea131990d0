"""One job's card: type and params, progress bar, step/total, percent, status, rate and ETA (or the
time it has run), duration, its latest log line or place in line, progress message and result (in full in
its dialog), log, cancel, run again."""

import reflex as rx
from reflex.event import EventSpec
from reflex.vars.object import ObjectVar

from rxapp.jobview import JobView
from rxapp.state.history import HistoryRow
from rxapp.state.jobs import JobsState
from rxapp.state.log import LogState
from rxapp.state.ops_jobs import OpsRow
from rxapp.state.result import ResultState
from tasks.model import JobStatus

STATUS_COLORS = {
    JobStatus.QUEUED: "gray",
    JobStatus.RUNNING: "blue",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "orange",
}


# A card's job, a row of the history or of the console: anything with a status.
Job = ObjectVar[JobView] | ObjectVar[HistoryRow] | ObjectVar[OpsRow]


def status_color(job: Job) -> rx.Var:
    return rx.match(job.status, *STATUS_COLORS.items(), "gray")


def status_badge(job: Job) -> rx.Component:
    return rx.badge(
        job.status,
        color_scheme=status_color(job),
        variant="soft",
        size="2",
        custom_attrs={"data-testid": "job-status"},
    )


def card_button(
    label: str, on_click: EventSpec, testid: str, variant: str = "ghost", color: str = "gray", icon: str = ""
) -> rx.Component:
    """One of a card's small buttons (Result, Log, Cancel, Run again)."""
    children = (rx.icon(icon, size=12), label) if icon else (label,)
    attrs = {"data-testid": testid}
    return rx.button(*children, on_click=on_click, variant=variant, color_scheme=color, size="1", custom_attrs=attrs)


def job_heading(job: Job) -> tuple[rx.Component, ...]:
    """A job's short id (in full on hover), status and type: how a card or a row of the history starts."""
    return (
        rx.code(job.job_id.to(str)[:8], variant="ghost", title=job.job_id),
        status_badge(job),
        rx.text(job.title, size="2", weight="medium", custom_attrs={"data-testid": "job-type-title"}),
    )


def params_line(job: Job) -> rx.Component:
    """The job's params in short, when it has any."""
    text = rx.text(job.params_text, size="1", color_scheme="gray", custom_attrs={"data-testid": "job-params"})
    return rx.cond(job.params_text != "", text)


def error_callout(message: str | rx.Var[str], testid: str) -> rx.Component:
    """What went wrong, under the form or atop the history (a state's var): shown while it is not empty."""
    text = rx.Var.create(message)
    attrs = {"data-testid": testid}
    callout = rx.callout(text, icon="triangle_alert", color_scheme="red", size="1", role="alert", custom_attrs=attrs)
    return rx.cond(text != "", callout)


def job_card(job: ObjectVar[JobView]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                *job_heading(job),
                rx.spacer(),
                rx.cond(job.has_result, card_button("Result", ResultState.open(job.job_id), "job-result-open")),
                card_button("Log", LogState.open(job.job_id), "job-log-open"),
                rx.cond(
                    job.cancellable,
                    card_button("Cancel", JobsState.cancel(job.job_id), "job-cancel", variant="soft", color="red"),
                    rx.fragment(
                        card_button("Run again", JobsState.rerun(job.job_id), "job-rerun", "soft", icon="rotate-ccw"),
                        rx.icon_button(
                            rx.icon("x", size=14),
                            on_click=JobsState.dismiss(job.job_id),
                            variant="ghost",
                            color_scheme="gray",
                            size="1",
                            aria_label="Dismiss",
                        ),
                    ),
                ),
                align="center",
                width="100%",
            ),
            params_line(job),
            # Without a value the bar moves on its own: a job that has not said how many steps it has.
            rx.progress(
                value=rx.cond(job.indeterminate, None, job.percent.to(int)),
                max=100,
                color_scheme=status_color(job),
                width="100%",
                size="2",
            ),
            rx.hstack(
                rx.text(job.step_text, size="2", weight="medium", custom_attrs={"data-testid": "job-step"}),
                rx.text(job.percent_text, size="2", color_scheme="gray", custom_attrs={"data-testid": "job-percent"}),
                rx.spacer(),
                rx.text(job.rate_text, size="2", color_scheme="gray"),
                rx.text(
                    rx.cond(job.cancellable, job.eta_text, job.duration_text),
                    size="2",
                    color_scheme="gray",
                    custom_attrs={"data-testid": "job-time"},
                ),
                width="100%",
                wrap="wrap",
                spacing="3",
            ),
            rx.cond(
                job.queue_text != "",
                rx.text(job.queue_text, size="2", color_scheme="gray", custom_attrs={"data-testid": "job-queue"}),
            ),
            rx.cond(
                job.line != "",
                rx.text(
                    job.line,
                    size="1",
                    color_scheme="gray",
                    font_family="monospace",
                    trim="both",
                    white_space="nowrap",
                    overflow="hidden",
                    text_overflow="ellipsis",
                    max_width="100%",
                    custom_attrs={"data-testid": "job-line"},
                ),
            ),
            rx.cond(job.message != "", rx.text(job.message, size="2", custom_attrs={"data-testid": "job-message"})),
            rx.cond(
                job.result_text != "",
                rx.text(job.result_text, size="2", color_scheme="green", custom_attrs={"data-testid": "job-result"}),
            ),
            rx.cond(job.error != "", rx.text(job.error, size="2", color_scheme="red")),
            spacing="2",
            width="100%",
        ),
        width="100%",
        custom_attrs={"data-testid": "job-card", "data-job-id": job.job_id},
    )
