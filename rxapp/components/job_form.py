"""The form that starts a job: a job type, its description, and a field for each of its params."""

import reflex as rx

from rxapp.components.job_card import error_callout
from rxapp.components.param_field import SELECT_STYLE, param_field
from rxapp.state.form import FormState
from rxapp.state.jobs import JobsState


def type_picker() -> rx.Component:
    """A native select (keyboard and form friendly); it has no name, so the type is not a param."""
    return rx.el.label(
        rx.text("Job type", as_="span", size="2", weight="medium"),
        rx.el.select(
            rx.foreach(FormState.types, lambda job: rx.el.option(job.title, value=job.name)),
            value=FormState.job_type,
            on_change=[FormState.choose, JobsState.clear_error],
            style=SELECT_STYLE,
            custom_attrs={"data-testid": "job-type"},
        ),
        display="flex",
        flex_direction="column",
        gap="var(--space-1)",
        width="100%",
    )


def job_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            type_picker(),
            rx.text(
                FormState.description,
                size="2",
                color_scheme="gray",
                custom_attrs={"data-testid": "job-type-description"},
            ),
            # Keyed by type: another type's form is drawn anew, with its own defaults.
            rx.vstack(
                rx.foreach(FormState.fields, param_field),
                key=FormState.job_type,
                spacing="3",
                width="100%",
                custom_attrs={"data-testid": "job-fields", "data-job-type": FormState.job_type},
            ),
            rx.hstack(
                rx.button(
                    rx.icon("play", size=16),
                    "Start job",
                    type="submit",
                    size="3",
                    custom_attrs={"data-testid": "job-submit"},
                ),
                justify="end",
                width="100%",
            ),
            error_callout(JobsState.error, "job-error"),
            spacing="3",
            width="100%",
        ),
        on_submit=JobsState.submit,
        width="100%",
    )
