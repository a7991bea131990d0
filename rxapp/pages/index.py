"""The page `/`: start a job, watch this browser's jobs live, and look back at its past ones."""

import reflex as rx

from rxapp.components.history_view import history_view
from rxapp.components.job_card import job_card
from rxapp.components.job_form import job_form
from rxapp.components.job_log import job_log
from rxapp.components.notify_bell import notify_bell
from rxapp.components.result_view import result_view
from rxapp.state.history import HistoryState
from rxapp.state.jobs import JobsState


def header() -> rx.Component:
    return rx.hstack(
        rx.vstack(
            rx.heading("Jobstream", size="7"),
            rx.text("Long background jobs, watched live.", color_scheme="gray", size="2"),
            spacing="1",
        ),
        rx.spacer(),
        notify_bell(),
        rx.color_mode.button(aria_label="Switch between light and dark mode", title="Light / dark mode"),
        width="100%",
        align="center",
        spacing="4",
    )


def live_jobs() -> rx.Component:
    return rx.cond(
        JobsState.jobs.length() > 0,
        rx.vstack(rx.foreach(JobsState.jobs, job_card), spacing="3", width="100%"),
        rx.text("No jobs yet. Start one above.", color_scheme="gray", size="2"),
    )


def index() -> rx.Component:
    return rx.container(
        rx.vstack(
            header(),
            rx.card(job_form(), width="100%"),
            job_log(),
            result_view(),
            rx.tabs.root(
                rx.tabs.list(
                    rx.tabs.trigger("Jobs", value="jobs", custom_attrs={"data-testid": "tab-jobs"}),
                    rx.tabs.trigger("History", value="history", custom_attrs={"data-testid": "tab-history"}),
                ),
                rx.tabs.content(live_jobs(), value="jobs", padding_top="1em"),
                # Radix mounts a tab's content only while it is shown.
                rx.tabs.content(history_view(), value="history", padding_top="1em"),
                value=HistoryState.tab,
                on_change=HistoryState.show_tab,
                width="100%",
            ),
            spacing="5",
            width="100%",
        ),
        size="2",
        padding_x="1em",
        padding_y="2em",
    )
