"""The console's bulk actions, each behind a confirmation dialog; and the operator's log dialog."""

import reflex as rx

from rxapp.components.job_log import log_row
from rxapp.components.param_field import SELECT_STYLE
from rxapp.state.ops_bulk import OpsBulkState
from rxapp.state.ops_jobs import OpsJobsState
from rxapp.state.ops_log import OpsLogState


def confirm_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Please confirm"),
            rx.alert_dialog.description(OpsBulkState.question, custom_attrs={"data-testid": "ops-confirm-question"}),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(
                    rx.button(
                        "Do it",
                        color_scheme="red",
                        on_click=OpsBulkState.confirm,
                        custom_attrs={"data-testid": "ops-confirm"},
                    ),
                ),
                justify="end",
                spacing="3",
                margin_top="1em",
            ),
        ),
        open=OpsBulkState.asking != "",
        on_open_change=OpsBulkState.dismiss,
    )


def ops_actions_view() -> rx.Component:
    types = rx.foreach(OpsJobsState.types[1:], lambda name: rx.el.option(name, value=name))
    return rx.vstack(
        rx.heading("Cancel every queued job of a type", size="3"),
        rx.hstack(
            rx.el.select(
                types,
                value=OpsBulkState.job_type,
                on_change=OpsBulkState.set_type,
                style=SELECT_STYLE,
                custom_attrs={"data-testid": "ops-bulk-type"},
            ),
            rx.button(
                "Cancel queued…",
                color_scheme="red",
                variant="soft",
                on_click=OpsBulkState.ask("cancel-queued"),
                custom_attrs={"data-testid": "ops-cancel-queued"},
            ),
            spacing="3",
            wrap="wrap",
        ),
        rx.heading("Run again every job that failed in the last hour", size="3"),
        rx.button(
            "Run failed again…",
            variant="soft",
            on_click=OpsBulkState.ask("rerun-failed"),
            custom_attrs={"data-testid": "ops-rerun-failed"},
        ),
        rx.cond(
            OpsBulkState.report != "",
            rx.callout(OpsBulkState.report, size="1", custom_attrs={"data-testid": "ops-report"}),
        ),
        confirm_dialog(),
        spacing="3",
        width="100%",
        custom_attrs={"data-testid": "ops-actions"},
    )


def ops_log() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Job log"),
            rx.dialog.description(rx.code(OpsLogState.job_id, variant="ghost"), " (times in UTC)", size="2"),
            rx.cond(OpsLogState.error != "", rx.callout(OpsLogState.error, color_scheme="red", size="1")),
            rx.scroll_area(
                rx.table.root(rx.table.body(rx.foreach(OpsLogState.rows, log_row)), size="1", width="100%"),
                type="auto",
                scrollbars="both",
                style={"max_height": "60vh"},
            ),
            rx.hstack(
                rx.button("Next", on_click=OpsLogState.next_page, size="1", disabled=OpsLogState.end),
                rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray", size="1")),
                justify="end",
                spacing="3",
                margin_top="1em",
            ),
            custom_attrs={"data-testid": "ops-log"},
        ),
        open=OpsLogState.job_id != "",
        on_open_change=OpsLogState.set_open,
    )
