"""The operator's console page (/ops): whether it is on, the operator's login as the page's socket
proves it, which tab shows, and the one loop per page that keeps the shown tab live.

Identity comes only from the socket's handshake: its Cookie header carries the HttpOnly
`jobstream_ops` cookie that POST /api/ops/login sets. The login form posts from the browser (fetch),
then reloads the page, because a socket's headers are fixed when it connects: the reload opens a new
socket that sends the new cookie (the Reflex token, in sessionStorage, stays the same). Logout posts
to /api/ops/logout and reloads the same way; the session it ends is refused at once by every event.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import reflex as rx

from rxapp.hub import hub
from rxapp.state.ops_gate import operator_session
from rxapp.state.ops_jobs import OpsJobsState
from rxapp.state.ops_live import OpsLiveState
from tasks.clients import clients

TABS = ("jobs", "workers", "charts", "actions")
# The shown tab is read again this often while the page is open (the jobs' page: a query of 21 rows
# and one Redis MGET; workers: one pipeline; charts: one query over the last hour).
REFRESH_S = {"jobs": 1, "workers": 2, "charts": 2}
LOGIN_PATH = "/api/ops/login"
LOGOUT_PATH = "/api/ops/logout"
# Pages (client tokens) whose refresh loop runs in this process: one loop a page.
_refreshing: set[str] = set()


def post_script(path: str, body: dict[str, Any]) -> str:
    """A fetch from the browser to the backend (so that the answer's Set-Cookie is kept) that
    resolves to {status, error}."""
    url = json.dumps(clients().settings.api_url.rstrip("/") + path)
    return (
        f"fetch({url}, {{method: 'POST', credentials: 'include', headers: {{'content-type': 'application/json'}},"
        f" body: JSON.stringify({json.dumps(body)})}})"
        ".then(async (r) => ({status: r.status, error: ((await r.json().catch(() => ({}))).error || '')}))"
        ".catch(() => ({status: 0, error: ''}))"
    )


def login_script() -> str:
    """Post the password typed in the form (read in the browser: it never goes through the socket)."""
    password = "document.getElementById('ops-password').value"
    return post_script(LOGIN_PATH, {}).replace("JSON.stringify({})", f"JSON.stringify({{password: {password}}})")


RELOAD = "window.location.reload()"


class OpsState(rx.State):
    """The console's gate and tabs."""

    checked: bool = False  # the page's load has run: until then it shows nothing
    enabled: bool = False
    signed_in: bool = False
    login_error: str = ""
    busy: bool = False
    tab: str = TABS[0]

    @rx.event
    async def load(self):
        """On page load: is the console on, and does this socket carry an operator's session? Signed in,
        the shown tab is read in this same event (its first delta brings the list with the console)."""
        self.enabled = clients().settings.ops_console
        self.signed_in = self.enabled and await operator_session(self) is not None
        self.checked = True
        if not self.signed_in:
            return None
        await self._read_tab(self.tab, first=True)
        return OpsState.refresh

    async def _read_tab(self, tab: str, first: bool = False) -> None:
        """Read the tab's data into its state; the caller checked the operator's session. `first`: the
        jobs' filters and page start over (the tab opened or the page loaded)."""
        if tab == "jobs":
            jobs = await self.get_state(OpsJobsState)
            await (jobs._first_page() if first else jobs._refresh())
        elif tab == "workers":
            await (await self.get_state(OpsLiveState))._read_workers()
        elif tab == "charts":
            await (await self.get_state(OpsLiveState))._read_stats()

    @rx.event
    def log_in(self):
        """The form was sent: post the password from the browser; its answer comes to `login_answer`."""
        if not clients().settings.ops_console:
            return None
        self.busy, self.login_error = True, ""
        return rx.call_script(login_script(), callback=OpsState.login_answer)

    @rx.event
    def login_answer(self, answer: dict):
        """What /api/ops/login said (the browser reports it: this handler reads and reveals nothing).
        Signed in: reload, so that the page's new socket sends the new cookie."""
        self.busy = False
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == 200:
            return rx.call_script(RELOAD)
        if status == 401:
            self.login_error = "Wrong password."
        elif status == 429:
            error = str(answer.get("error", ""))
            self.login_error = error[:120] if error.startswith("Too many login attempts") else "Too many attempts."
        else:
            self.login_error = "The console cannot be reached right now; please try again in a moment."
        return None

    @rx.event
    def log_out(self):
        """Post the logout from the browser (it clears the HttpOnly cookie), then reload: the form shows
        once the new socket, without the cookie, has loaded the page."""
        return rx.call_script(post_script(LOGOUT_PATH, {}) + f".then(() => {RELOAD})")

    @rx.event
    async def show_tab(self, tab: str):
        if tab not in TABS or await operator_session(self) is None:
            return
        self.tab = tab
        await self._read_tab(tab, first=True)

    @rx.event(background=True)
    async def refresh(self):
        """Read the shown tab again every REFRESH_S[tab] while the page is open and signed in (one
        loop a page; it ends when the page goes or its session ends)."""
        token = self.router.session.client_token
        if token in _refreshing:
            return
        _refreshing.add(token)
        try:
            ticks = 0
            while hub.is_connected(token):
                await asyncio.sleep(1.0)
                ticks += 1
                async with self:
                    tab = self.tab
                if tab not in REFRESH_S or ticks % REFRESH_S[tab]:
                    continue
                if await operator_session(self) is None:
                    async with self:
                        self.signed_in = False
                    return
                await self._refresh_tab(tab)
        finally:
            _refreshing.discard(token)

    async def _refresh_tab(self, tab: str) -> None:
        async with self:
            await self._read_tab(tab)
