"""A scripted Jobstream page over Reflex 0.10.1's WebSocket: what a browser tab sends, without a DOM.

The protocol, from reflex/app.py (EventNamespace) and the compiled .web/utils/state.js: socket.io on
namespace and path `/_event`, the tab's client token in the query, and the hydrate event in the
CONNECT packet's auth, carrying the browser's cookies that are `rx.Cookie` vars (here the jobs
cookie). The backend answers with `event` messages holding `delta` (state changes by substate) and
`events` (scripts for the browser). A scripted page answers the one that asks for the browser's id
(its result goes back as the `recover` event, as the browser's callback sends it) and skips the
cookie's updates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import socketio

from bench.arrivals import Arrival
from rxapp.state.cookie import BROWSER_COOKIE_NAME

NAMESPACE = "/_event"
ROOT_STATE = "reflex___state____state"
HYDRATE = f"{ROOT_STATE}.hydrate_and_load"
JOBS_STATE = f"{ROOT_STATE}.rxapp___state___jobs____jobs_state"
JOBS_VAR = "jobs_rx_state_"
RECOVER = f"{JOBS_STATE}.recover"
COOKIE_VAR = f"{JOBS_STATE}.cookie_rx_state_"
ROUTER_DATA = {"pathname": "/", "asPath": "/"}
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class PageClient:
    """One tab of the page `/` whose jobs cookie names `job_id`, with its own client token."""

    def __init__(self, url: str, job_id: str) -> None:
        self.url = url
        self.job_id = job_id
        self.token = str(uuid.uuid4())
        self.browser_id = str(uuid.uuid4())
        self.arrivals: list[Arrival] = []
        self.watching = asyncio.Event()  # the job's card arrived: the page has recovered the job
        self.finished = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("event", self._on_event, namespace=NAMESPACE)

    async def open(self, timeout_s: float = 30.0) -> None:
        """Connect and hydrate; on_load follows on the backend and starts the job's watcher."""
        boot = {"name": HYDRATE, "payload": {"vars": {COOKIE_VAR: self.job_id}}, "router_data": ROUTER_DATA}
        await self.sio.connect(
            f"{self.url}?token={self.token}",
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
        for event in update.get("events") or ():
            script = (event.get("payload") or {}).get("javascript_code", "")
            if event.get("name") == "_call_script" and BROWSER_COOKIE_NAME in str(script):
                answer = {"name": RECOVER, "payload": {"browser_id": self.browser_id}, "router_data": ROUTER_DATA}
                await self.sio.emit("event", answer, namespace=NAMESPACE)
        cards = (update.get("delta") or {}).get(JOBS_STATE, {}).get(JOBS_VAR)
        for card in cards or ():
            if card["job_id"] == self.job_id:
                self.arrivals.append(Arrival(at, int(card["step"]), card["status"] in FINISHED))
                self.watching.set()
                if card["status"] in FINISHED:
                    self.finished.set()
