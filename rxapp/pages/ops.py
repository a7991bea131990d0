"""The page `/ops`: the operator's console, behind its login; "not found" while the console is off."""

import reflex as rx

from rxapp.components.ops_actions import ops_actions_view, ops_log
from rxapp.components.ops_jobs_view import ops_jobs_view
from rxapp.components.ops_live_view import ops_charts_view, ops_workers_view
from rxapp.components.ops_login import console_off, login_form
from rxapp.state.ops import OpsState


def header() -> rx.Component:
    return rx.hstack(
        rx.heading("Jobstream · operator", size="6"),
        rx.spacer(),
        rx.color_mode.button(aria_label="Switch between light and dark mode", title="Light / dark mode"),
        rx.cond(
            OpsState.signed_in,
            rx.button(
                "Log out",
                variant="soft",
                size="1",
                on_click=OpsState.log_out,
                custom_attrs={"data-testid": "ops-logout"},
            ),
        ),
        width="100%",
        align="center",
        spacing="3",
        wrap="wrap",
    )


def tab(label: str, value: str) -> rx.Component:
    return rx.tabs.trigger(label, value=value, custom_attrs={"data-testid": f"ops-tab-{value}"})


def console() -> rx.Component:
    # Radix mounts a tab's content only while it is shown.
    return rx.tabs.root(
        rx.tabs.list(
            tab("Jobs", "jobs"), tab("Workers", "workers"), tab("Charts", "charts"), tab("Actions", "actions")
        ),
        rx.tabs.content(ops_jobs_view(), value="jobs", padding_top="1em"),
        rx.tabs.content(ops_workers_view(), value="workers", padding_top="1em"),
        rx.tabs.content(ops_charts_view(), value="charts", padding_top="1em"),
        rx.tabs.content(ops_actions_view(), value="actions", padding_top="1em"),
        value=OpsState.tab,
        on_change=OpsState.show_tab,
        width="100%",
        custom_attrs={"data-testid": "ops-console"},
    )


def ops() -> rx.Component:
    return rx.container(
        rx.cond(
            OpsState.checked,
            rx.cond(
                OpsState.enabled,
                rx.vstack(
                    header(), rx.cond(OpsState.signed_in, console(), login_form()), ops_log(), spacing="5", width="100%"
                ),
                console_off(),
            ),
        ),
        size="3",
        padding_x="1em",
        padding_y="2em",
    )
