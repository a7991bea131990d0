"""The log dialog: the job's params in full, and its records (step, status or level, time,
message; a traceback in full), everything or its lines only, with paging; live at the end of a
running job's log."""

import reflex as rx
from reflex.vars.object import ObjectVar

from rxapp.state.log import LogRow, LogState, ParamLine
from tasks.model import LineKind

LEVEL_COLORS = {"debug": "gray", "warning": "amber", "error": "red", "critical": "red"}


def message_cell(row: ObjectVar[LogRow]) -> rx.Component:
    return rx.table.cell(
        rx.match(
            row.kind,
            (
                LineKind.ERROR.value,
                rx.code(
                    row.message,
                    color_scheme="red",
                    variant="ghost",
                    white_space="pre-wrap",
                    custom_attrs={"data-testid": "job-log-traceback"},
                ),
            ),
            (
                LineKind.LOG.value,
                rx.text(row.message, white_space="pre-wrap", word_break="break-word", font_family="monospace"),
            ),
            rx.text(row.message),
        )
    )


def log_row(row: ObjectVar[LogRow]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row.step),
        rx.table.cell(
            rx.cond(
                row.kind == LineKind.STATE.value,
                rx.text(row.status),
                rx.badge(row.status, variant="soft", color_scheme=rx.match(row.status, *LEVEL_COLORS.items(), "blue")),
            )
        ),
        rx.table.cell(row.time_text, white_space="nowrap"),
        message_cell(row),
        custom_attrs={"data-testid": "job-log-row", "data-kind": row.kind},
    )


def param_item(param: ObjectVar[ParamLine]) -> rx.Component:
    return rx.data_list.item(
        rx.data_list.label(param.name),
        # A long text keeps its lines, and wraps.
        rx.data_list.value(param.value, white_space="pre-wrap", word_break="break-word"),
        custom_attrs={"data-testid": "job-log-param"},
    )


def params_list() -> rx.Component:
    return rx.scroll_area(
        rx.data_list.root(rx.foreach(LogState.params, param_item), size="1"),
        type="auto",
        scrollbars="vertical",
        style={"max_height": "20vh"},
        custom_attrs={"data-testid": "job-log-params"},
    )


def page_range() -> rx.Component:
    return rx.text(
        rx.cond(LogState.rows.length() > 0, LogState.rows.length().to_string() + " records shown", "No records yet"),
        rx.cond(LogState.live, " (live: new records appear as the job writes them)", ""),
        rx.cond(LogState.end & ~LogState.live, " (the end of the log)", ""),
        size="2",
        color_scheme="gray",
        custom_attrs={"data-testid": "job-log-range"},
    )


def kind_filter() -> rx.Component:
    return rx.segmented_control.root(
        rx.segmented_control.item("Everything", value="all"),
        rx.segmented_control.item("Lines only", value="lines"),
        value=rx.cond(LogState.lines_only, "lines", "all"),
        on_change=lambda value: LogState.show_lines_only(value == "lines"),
        size="1",
        custom_attrs={"data-testid": "job-log-filter"},
    )


def job_log() -> rx.Component:
    """Open while LogState.job_id is set; the card's Log button sets it."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(LogState.title != "", "Job log: " + LogState.title, "Job log")),
            rx.dialog.description(
                rx.code(LogState.job_id, variant="ghost"),
                ": its steps and the lines it wrote, as its Kafka topic holds them (times in UTC).",
                size="2",
            ),
            kind_filter(),
            rx.cond(LogState.error != "", rx.callout(LogState.error, color_scheme="red", size="1")),
            rx.cond(LogState.params.length() > 0, params_list()),
            rx.scroll_area(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Step"),
                            rx.table.column_header_cell("Status / level"),
                            rx.table.column_header_cell("Time"),
                            rx.table.column_header_cell("Message"),
                        )
                    ),
                    rx.table.body(rx.foreach(LogState.rows, log_row)),
                    size="1",
                    width="100%",
                ),
                type="auto",
                scrollbars="vertical",
                style={"max_height": "50vh"},
            ),
            rx.hstack(
                page_range(),
                rx.spacer(),
                rx.button(
                    "From the start",
                    on_click=LogState.first_page,
                    variant="soft",
                    size="1",
                    disabled=LogState.at_start,
                ),
                rx.button(
                    "Next",
                    on_click=LogState.next_page,
                    size="1",
                    disabled=LogState.end,
                    custom_attrs={"data-testid": "job-log-next"},
                ),
                rx.dialog.close(
                    rx.button("Close", variant="soft", color_scheme="gray", size="1"),
                ),
                align="center",
                wrap="wrap",
                margin_top="1em",
                width="100%",
            ),
            custom_attrs={"data-testid": "job-log"},
        ),
        open=LogState.job_id != "",
        on_open_change=LogState.set_open,
    )
