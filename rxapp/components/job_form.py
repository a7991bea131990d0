"""The form that starts a job."""

import reflex as rx

from rxapp.state.jobs import JobsState


def job_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.text("Number of steps", as_="label", html_for="job-n", size="2", weight="medium"),
            rx.hstack(
                rx.input(
                    id="job-n",
                    name="n",
                    placeholder="e.g. 1000",
                    input_mode="numeric",
                    auto_complete="off",
                    required=True,
                    size="3",
                    width="100%",
                    custom_attrs={"data-testid": "job-n-input"},
                ),
                rx.button(
                    rx.icon("play", size=16),
                    "Start job",
                    type="submit",
                    size="3",
                    custom_attrs={"data-testid": "job-submit"},
                ),
                width="100%",
                spacing="2",
            ),
            rx.cond(
                JobsState.error != "",
                rx.callout(
                    JobsState.error,
                    icon="triangle_alert",
                    color_scheme="red",
                    size="1",
                    role="alert",
                    custom_attrs={"data-testid": "job-error"},
                ),
            ),
            spacing="2",
            width="100%",
        ),
        on_submit=JobsState.submit,
        reset_on_submit=True,
        width="100%",
    )
