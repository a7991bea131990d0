"""The operator's session of a console page: every console event asks here first."""

from __future__ import annotations

import asyncio

import reflex as rx

from rxapp.session import session_cookie
from tasks.clients import clients
from tasks.model import ServiceUnavailable
from tasks.ops import sessions


async def operator_session(state: rx.State) -> str | None:
    """The operator session the page's socket proves (its handshake's cookie), or None: console off,
    no cookie, a forged, expired or logged-out one, or Redis unreachable."""
    settings = clients().settings
    value = session_cookie(state.router.headers.cookie, sessions.COOKIE_NAME)
    if not settings.ops_console or not value:
        return None
    try:
        return await asyncio.to_thread(sessions.session_of, value, settings, clients().redis)
    except ServiceUnavailable:
        return None


def operator_name(session_id: str) -> str:
    """Who acted, for the logs (as rxapp.ops_api names a session)."""
    return f"session {session_id[:6]}"
