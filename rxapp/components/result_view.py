"""The result dialog: a job's result in full, as a table of its records or as formatted JSON, with a
download of it as a JSON file."""

import reflex as rx
from reflex.vars.base import Var

from rxapp.state.result import ResultState


def result_row(row: Var[list[str]]) -> rx.Component:
    return rx.table.row(
        rx.foreach(row, lambda cell: rx.table.cell(cell, white_space="pre-wrap")),
        custom_attrs={"data-testid": "job-result-row"},
    )


def records_table() -> rx.Component:
    return rx.vstack(
        rx.scroll_area(
            rx.table.root(
                rx.table.header(rx.table.row(rx.foreach(ResultState.columns, rx.table.column_header_cell))),
                rx.table.body(rx.foreach(ResultState.rows, result_row)),
                size="1",
                width="100%",
            ),
            type="auto",
            scrollbars="both",
            style={"max_height": "60vh"},
            custom_attrs={"data-testid": "job-result-table"},
        ),
        rx.text(ResultState.rows_note, size="2", color_scheme="gray", custom_attrs={"data-testid": "job-result-rows"}),
        width="100%",
    )


def json_block() -> rx.Component:
    return rx.scroll_area(
        rx.el.pre(
            rx.code(ResultState.json_text, variant="ghost", size="2"),
            margin="0",
            padding="0.75em",
            border_radius="var(--radius-2)",
            background_color="var(--gray-a3)",
            custom_attrs={"data-testid": "job-result-json"},
        ),
        type="auto",
        scrollbars="both",
        style={"max_height": "60vh"},
    )


def result_view() -> rx.Component:
    """Open while ResultState.job_id is set; the card's Result button sets it."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(ResultState.title != "", "Result: " + ResultState.title, "Result")),
            rx.dialog.description(
                rx.code(ResultState.job_id, variant="ghost"),
                ": what the job returned.",
                size="2",
            ),
            rx.cond(ResultState.error != "", rx.callout(ResultState.error, color_scheme="red", size="1")),
            rx.cond(ResultState.columns.length() > 0, records_table()),
            rx.cond(ResultState.json_text != "", json_block()),
            rx.hstack(
                rx.spacer(),
                rx.button(
                    rx.icon("download", size=14),
                    "Download",
                    on_click=ResultState.download,
                    size="1",
                    disabled=ResultState.error != "",
                    custom_attrs={"data-testid": "job-result-download"},
                ),
                rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray", size="1")),
                align="center",
                margin_top="1em",
                width="100%",
            ),
            max_width="min(900px, 95vw)",
            custom_attrs={"data-testid": "job-result-view"},
        ),
        open=ResultState.job_id != "",
        on_open_change=ResultState.set_open,
    )
