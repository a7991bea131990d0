"""A scripted Jobstream page over Reflex 0.10.1's WebSocket: what a browser tab sends, without a DOM.

The protocol, from reflex/app.py (EventNamespace) and the compiled .web/utils/state.js: socket.io on
namespace and path `/_event`, the tab's client token in the query, the hydrate event in the CONNECT
packet's auth, and the browser's session cookie (rxapp.session) on the handshake, which makes the
page its owner's. The backend answers with `event` messages holding `delta` (state changes by
substate); on load the page shows its owner's unfinished jobs and follows them.
"""

from __future__ import annotations

import asyncio
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
ROUTER_DATA = {"pathname": "/", "asPath": "/"}
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class PageClient:
    """One tab of the page `/` of the browser whose session cookie is `session` (a Cookie header
    value), watching its job `job_id`, with its own client token."""

    def __init__(self, url: str, job_id: str, session: str) -> None:
        self.url = url
        self.job_id = job_id
        self.session = session
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
            headers={"Cookie": self.session},
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
