"""What the page says while it cannot reach its server: a plain notice, in place of Reflex's error
toast, which shows the socket's error text and the server's address. The details stay in the
browser's console and the server's log."""

from __future__ import annotations

import reflex as rx
from reflex_components_core.core.banner import connection_pulser, has_connection_errors

OUTAGE_TEXT = "Jobstream cannot reach its server right now. The page reconnects by itself; your jobs go on meanwhile."


def outage_notice() -> rx.Component:
    return rx.fragment(
        connection_pulser(),
        rx.cond(
            has_connection_errors,
            rx.callout(
                OUTAGE_TEXT,
                icon="wifi_off",
                color_scheme="amber",
                role="status",
                data_testid="connection-lost",
                position="fixed",
                bottom="1rem",
                left="50%",
                transform="translateX(-50%)",
                z_index="9999",
            ),
        ),
    )
