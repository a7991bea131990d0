"""The console's Jobs tab: filters, search, a page of every owner's jobs (each row: type, owner's tag,
params in short, status, progress, start, duration; log, cancel, run again) and the pager."""

import reflex as rx
from reflex.event import EventType
from reflex.vars.object import ObjectVar

from rxapp.components.job_card import card_button, error_callout, status_badge
from rxapp.components.pager import pager
from rxapp.components.param_field import SELECT_STYLE
from rxapp.state.ops_jobs import STATUS_FILTERS, OpsJobsState, OpsRow
from rxapp.state.ops_log import OpsLogState


def labelled_select(
    label: str, choices: list[rx.Component], value: rx.Var | str, on_change: EventType[str], testid: str
) -> rx.Component:
    return rx.el.label(
        rx.text(label, as_="span", size="2", color_scheme="gray"),
        rx.el.select(
            *choices,
            value=value,
            on_change=on_change,
            style=SELECT_STYLE,
            custom_attrs={"data-testid": testid},
        ),
        display="flex",
        align_items="center",
        gap="var(--space-2)",
    )


def filters() -> rx.Component:
    return rx.hstack(
        labelled_select(
            "Status",
            [rx.el.option(name.capitalize(), value=name) for name in STATUS_FILTERS],
            OpsJobsState.status_filter,
            OpsJobsState.filter_status,
            "ops-filter-status",
        ),
        labelled_select(
            "Type",
            [rx.foreach(OpsJobsState.types, lambda name: rx.el.option(name, value=name))],
            OpsJobsState.type_filter,
            OpsJobsState.filter_type,
            "ops-filter-type",
        ),
        rx.input(
            placeholder="Job id starts with…",
            on_change=OpsJobsState.search.debounce(300),
            max_length=36,
            size="2",
            width="14em",
            max_width="100%",
            custom_attrs={"data-testid": "ops-search"},
        ),
        spacing="3",
        wrap="wrap",
        align="center",
        width="100%",
    )


def ops_row(row: ObjectVar[OpsRow]) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.code(row.job_id.to(str)[:8], variant="ghost", title=row.job_id),
            status_badge(row),
            rx.text(row.type, size="2", weight="medium"),
            rx.text(row.owner, size="1", color_scheme="gray", title="Owner (a tag, not their id)"),
            rx.hstack(
                card_button("Log", OpsLogState.open(row.job_id), "ops-log-open"),
                rx.cond(
                    row.cancellable, card_button("Cancel", OpsJobsState.cancel(row.job_id), "ops-cancel", color="red")
                ),
                rx.cond(
                    row.finished,
                    card_button("Run again", OpsJobsState.rerun(row.job_id), "ops-rerun", "soft", icon="rotate-ccw"),
                ),
                spacing="4",
                margin_left="auto",
            ),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        rx.cond(row.params != "", rx.text(row.params, size="1", color_scheme="gray", word_break="break-all")),
        rx.hstack(
            rx.progress(value=row.percent, max=100, width="8em", size="1"),
            rx.text(row.step_text, size="1", custom_attrs={"data-testid": "ops-step"}),
            rx.text(row.started_text, size="1", color_scheme="gray"),
            rx.text(row.duration_text, size="1", color_scheme="gray"),
            spacing="3",
            align="center",
            wrap="wrap",
        ),
        spacing="1",
        padding_y="var(--space-2)",
        border_bottom="1px solid var(--gray-a5)",
        width="100%",
        custom_attrs={"data-testid": "ops-row", "data-job-id": row.job_id, "data-status": row.status},
    )


def ops_jobs_view() -> rx.Component:
    return rx.vstack(
        filters(),
        rx.text(
            "Every owner's jobs that a worker started, newest first; the page shown is read again every second.",
            size="1",
            color_scheme="gray",
        ),
        error_callout(OpsJobsState.error, "ops-jobs-error"),
        rx.cond(
            OpsJobsState.notice != "",
            rx.text(OpsJobsState.notice, size="2", custom_attrs={"data-testid": "ops-notice"}),
        ),
        rx.cond(
            OpsJobsState.rows.length() > 0,
            rx.vstack(rx.foreach(OpsJobsState.rows, ops_row), spacing="0", width="100%"),
            rx.cond(
                OpsJobsState.loaded,
                rx.text("No jobs.", size="2", color_scheme="gray", custom_attrs={"data-testid": "ops-empty"}),
            ),
        ),
        rx.cond((OpsJobsState.page_number > 1) | OpsJobsState.has_older, pager(OpsJobsState, "ops")),
        spacing="3",
        width="100%",
        custom_attrs={"data-testid": "ops-jobs"},
    )
