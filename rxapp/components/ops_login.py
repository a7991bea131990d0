"""The console's login form, and the notice shown while the console is off."""

import reflex as rx

from rxapp.components.job_card import error_callout
from rxapp.state.ops import OpsState


def console_off() -> rx.Component:
    """What /ops shows while no operator password is set: the same as a page that does not exist."""
    return rx.vstack(
        rx.heading("Not found", size="6"),
        rx.text("There is no page here.", color_scheme="gray", size="2"),
        rx.link("Back to Jobstream", href="/"),
        spacing="3",
        custom_attrs={"data-testid": "ops-off"},
    )


def login_form() -> rx.Component:
    # The password is read by the browser's fetch (OpsState.log_in), never sent through the socket.
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Operator's console", size="5"),
                rx.text("Every job, every worker, the queue and the last hour.", size="2", color_scheme="gray"),
                rx.el.label(
                    rx.text("Password", size="2", as_="span"),
                    rx.input(
                        id="ops-password",
                        type="password",
                        auto_complete="current-password",
                        required=True,
                        width="100%",
                        custom_attrs={"data-testid": "ops-password"},
                    ),
                    width="100%",
                ),
                error_callout(OpsState.login_error, "ops-login-error"),
                rx.button(
                    "Log in",
                    type="submit",
                    loading=OpsState.busy,
                    custom_attrs={"data-testid": "ops-login"},
                ),
                spacing="3",
                width="100%",
            ),
            on_submit=lambda _form: OpsState.log_in,
            reset_on_submit=False,
        ),
        width="100%",
        max_width="24em",
        custom_attrs={"data-testid": "ops-login-form"},
    )
