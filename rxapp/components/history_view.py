"""The History tab: the owner's past jobs, a page at a time, newest first, with a status filter;
each row opens the job's log and result and runs it again."""

import reflex as rx
from reflex.vars.object import ObjectVar

from rxapp.components.job_card import card_button, error_callout, job_heading, params_line
from rxapp.components.pager import pager
from rxapp.components.param_field import SELECT_STYLE
from rxapp.state.history import FILTERS, HistoryRow, HistoryState
from rxapp.state.log import LogState
from rxapp.state.result import ResultState


def status_filter() -> rx.Component:
    return rx.el.label(
        rx.text("Status", as_="span", size="2", color_scheme="gray"),
        rx.el.select(
            *[rx.el.option(name.capitalize(), value=name) for name in FILTERS],
            value=HistoryState.status_filter,
            on_change=HistoryState.filter_by,
            style=SELECT_STYLE,
            custom_attrs={"data-testid": "history-filter"},
        ),
        display="flex",
        align_items="center",
        gap="var(--space-2)",
    )


def history_row(row: ObjectVar[HistoryRow]) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            *job_heading(row),
            # One group, at the right on a wide screen and on a line of its own on a narrow one.
            rx.hstack(
                rx.cond(row.has_result, card_button("Result", ResultState.open(row.job_id), "history-result-open")),
                card_button("Log", LogState.open(row.job_id), "history-log-open"),
                rx.cond(
                    row.finished,
                    card_button(
                        "Run again", HistoryState.rerun(row.job_id), "history-rerun", "soft", icon="rotate-ccw"
                    ),
                ),
                align="center",
                spacing="4",
                margin_left="auto",
            ),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        params_line(row),
        rx.hstack(
            *[
                rx.text(text, size="1", color_scheme="gray", custom_attrs={"data-testid": testid})
                for text, testid in (
                    (row.started_text, "history-started"),
                    (row.step_text, "history-step"),
                    (row.time_text, "history-time"),
                )
            ],
            spacing="3",
            wrap="wrap",
        ),
        spacing="1",
        padding_y="var(--space-2)",
        border_bottom="1px solid var(--gray-a5)",
        width="100%",
        custom_attrs={"data-testid": "history-row", "data-job-id": row.job_id},
    )


def history_view() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            status_filter(),
            rx.spacer(),
            rx.button(
                rx.icon("refresh-cw", size=14),
                "Refresh",
                on_click=HistoryState.refresh,
                variant="ghost",
                size="1",
                custom_attrs={"data-testid": "history-refresh"},
            ),
            align="center",
            width="100%",
        ),
        rx.text(
            "This browser's jobs that a worker started, newest first, kept for the retention period.",
            size="1",
            color_scheme="gray",
        ),
        error_callout(HistoryState.error, "history-error"),
        rx.cond(
            HistoryState.rows.length() > 0,
            rx.vstack(rx.foreach(HistoryState.rows, history_row), spacing="0", width="100%"),
            rx.cond(
                HistoryState.loaded & (HistoryState.error == ""),
                rx.text(
                    HistoryState.empty_text,
                    size="2",
                    color_scheme="gray",
                    custom_attrs={"data-testid": "history-empty"},
                ),
                rx.cond(~HistoryState.loaded, rx.text("Loading…", size="2", color_scheme="gray")),
            ),
        ),
        rx.cond((HistoryState.page_number > 1) | HistoryState.has_older, pager(HistoryState, "history")),
        spacing="3",
        width="100%",
        custom_attrs={"data-testid": "history-view"},
    )
