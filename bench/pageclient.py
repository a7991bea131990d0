"""A scripted Jobstream page over Reflex 0.10.1's WebSocket: what a browser tab sends, without a DOM.

The protocol, from reflex/app.py (EventNamespace) and the compiled .web/utils/state.js: socket.io on
namespace and path `/_event`, the tab's client token in the query, and the hydrate event in the
CONNECT packet's auth. The backend answers with `event` messages holding `delta` (state changes by
substate) and `events` (scripts for the browser). The page's on_load asks the browser, by a script,
for its jobs cookie; this client answers that script with its cookie, as the browser would.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import socketio

from bench.arrivals import Arrival

NAMESPACE = "/_event"
ROOT_STATE = "reflex___state____state"
HYDRATE = f"{ROOT_STATE}.hydrate_and_load"
JOBS_STATE = f"{ROOT_STATE}.rxapp___state___jobs____jobs_state"
JOBS_VAR = "jobs_rx_state_"
COOKIE_NAME = "jobstream_jobs"
ROUTER_DATA = {"pathname": "/", "asPath": "/"}
# How rx.call_script compiles a callback: the event to send back and the argument holding the result.
CALLBACK_RE = re.compile(r'ReflexEvent\("([^"]+)", \{(\w+):_result\}\)')
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class PageClient:
    """One tab of the page `/` whose jobs cookie names `job_id`, with its own client token."""

    def __init__(self, url: str, job_id: str) -> None:
        self.url = url
        self.job_id = job_id
        self.token = str(uuid.uuid4())
        self.arrivals: list[Arrival] = []
        self.watching = asyncio.Event()  # the job's card arrived: the page has recovered the job
        self.finished = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("event", self._on_event, namespace=NAMESPACE)

    async def open(self, timeout_s: float = 30.0) -> None:
        """Connect and hydrate; on_load follows on the backend and starts the job's watcher."""
        boot = {"name": HYDRATE, "payload": {}, "router_data": ROUTER_DATA}
        await self.sio.connect(
            f"{self.url}?token={self.token}",
            headers={"Cookie": f"{COOKIE_NAME}={self.job_id}"},
            auth={"event": boot},
            transports=["websocket"],
            namespaces=[NAMESPACE],
            socketio_path=NAMESPACE,
            wait_timeout=timeout_s,
        )

    async def close(self) -> None:
        await self.sio.disconnect()

    async def _on_event(self, update: dict[str, Any]) -> None:
        at = time.time()
        cards = (update.get("delta") or {}).get(JOBS_STATE, {}).get(JOBS_VAR)
        for card in cards or ():
            if card["job_id"] == self.job_id:
                self.arrivals.append(Arrival(at, int(card["step"]), card["status"] in FINISHED))
                self.watching.set()
                if card["status"] in FINISHED:
                    self.finished.set()
        for event in update.get("events") or ():
            await self._run_script(event)

    async def _run_script(self, event: dict[str, Any]) -> None:
        """Answer a script that reads the cookie; the page's other scripts only write it and are skipped."""
        payload = event.get("payload") or {}
        code, callback = payload.get("javascript_code", ""), payload.get("callback") or ""
        match = CALLBACK_RE.search(callback)
        if event.get("name") != "_call_script" or "document.cookie" not in code or match is None:
            return
        name, argument = match.groups()
        answer = {"name": name, "payload": {argument: self.job_id}, "router_data": ROUTER_DATA}
        await self.sio.emit("event", answer, namespace=NAMESPACE)
