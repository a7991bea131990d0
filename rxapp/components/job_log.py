"""The log dialog: the job's params in full, and one page of its records (step, status, message,
time), with paging."""

import reflex as rx
from reflex.vars.object import ObjectVar

from rxapp.state.log import LogLine, LogState, ParamLine


def log_row(line: ObjectVar[LogLine]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(line.step),
        rx.table.cell(line.status),
        rx.table.cell(line.time_text),
        rx.table.cell(line.message),
        custom_attrs={"data-testid": "job-log-row"},
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
    first = LogState.offset + 1
    last = LogState.offset + LogState.lines.length()
    return rx.text(
        rx.cond(LogState.lines.length() > 0, f"Records {first}-{last}", "No records yet"),
        rx.cond(LogState.end, " (the end of the log so far)", ""),
        size="2",
        color_scheme="gray",
        custom_attrs={"data-testid": "job-log-range"},
    )


def job_log() -> rx.Component:
    """Open while LogState.job_id is set; the card's Log button sets it."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(LogState.title != "", "Job log: " + LogState.title, "Job log")),
            rx.dialog.description(
                rx.code(LogState.job_id, variant="ghost"),
                ": every step as its Kafka topic holds it (times in UTC).",
                size="2",
            ),
            rx.cond(LogState.error != "", rx.callout(LogState.error, color_scheme="red", size="1")),
            rx.cond(LogState.params.length() > 0, params_list()),
            rx.scroll_area(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Step"),
                            rx.table.column_header_cell("Status"),
                            rx.table.column_header_cell("Time"),
                            rx.table.column_header_cell("Message"),
                        )
                    ),
                    rx.table.body(rx.foreach(LogState.lines, log_row)),
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
                    disabled=LogState.offset == 0,
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
