"""Newer / Page N / Older: the pager of a list paged by keyset (the history tab, the console's jobs)."""

from __future__ import annotations

from typing import Any

import reflex as rx


def pager(state: Any, test_prefix: str) -> rx.Component:
    """The pager of `state`, which has `newer`, `older`, `page_number` and `has_older`; its parts carry
    the test ids `<test_prefix>-newer`, `-page` and `-older`."""
    return rx.hstack(
        rx.button(
            rx.icon("chevron-left", size=14),
            "Newer",
            on_click=state.newer,
            disabled=state.page_number <= 1,
            variant="soft",
            size="1",
            custom_attrs={"data-testid": f"{test_prefix}-newer"},
        ),
        rx.text("Page ", state.page_number, size="2", custom_attrs={"data-testid": f"{test_prefix}-page"}),
        rx.button(
            "Older",
            rx.icon("chevron-right", size=14),
            on_click=state.older,
            disabled=~state.has_older,
            variant="soft",
            size="1",
            custom_attrs={"data-testid": f"{test_prefix}-older"},
        ),
        align="center",
        justify="center",
        width="100%",
    )
