"""The bell in the header: asks the browser for notifications when clicked, never before, and shows
what the browser answered."""

import reflex as rx

from rxapp.state.notify import NotifyState

HINT = "Notify me when a job ends while this tab is in the background"


def notify_bell() -> rx.Component:
    permission = NotifyState.permission
    return rx.icon_button(
        rx.match(
            permission,
            ("granted", rx.icon("bell-ring", size=18)),
            ("denied", rx.icon("bell-off", size=18)),
            ("unsupported", rx.icon("bell-off", size=18)),
            rx.icon("bell", size=18),
        ),
        on_click=NotifyState.ask,
        variant=rx.match(permission, ("granted", "soft"), "ghost"),
        color_scheme="gray",
        aria_label=HINT,
        title=rx.match(
            permission,
            ("granted", "Notifications are on: a job that ends while this tab is in the background says so"),
            ("denied", "Notifications are blocked for this site in the browser's settings"),
            ("unsupported", "This browser cannot show notifications"),
            HINT,
        ),
        custom_attrs={"data-testid": "notify-bell", "data-permission": permission},
    )
