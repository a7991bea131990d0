"""The page's socket tried as an attacker would, without a browser: a raw socket.io client that names
another browser's job, floods events, and holds many sockets from one address."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import pytest
import socketio

from rxapp.session import client_address
from tasks import service
from tasks.clients import Clients
from tasks.model import JobStatus
from tests.browser import JobPage
from tests.conftest import BOTH_STATE_MANAGERS, WebApp, run_async

ROOT = "reflex___state____state"
JOBS = f"{ROOT}.rxapp___state___jobs____jobs_state"
LOG = f"{ROOT}.rxapp___state___log____log_state"
RESULT = f"{ROOT}.rxapp___state___result____result_state"
NOTIFY = f"{ROOT}.rxapp___state___notify____notify_state"
ROUTER_DATA = {"pathname": "/", "asPath": "/"}
BIG_N = 1_000_000


class RawPage:
    """A socket.io client speaking the page's protocol (see bench/pageclient.py), sending what it likes."""

    def __init__(self, web: WebApp) -> None:
        self.url = web.backend
        self.updates: list[dict[str, Any]] = []
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("event", self.updates.append, namespace="/_event")

    async def open(self) -> None:
        hydrate = {"name": f"{ROOT}.hydrate_and_load", "payload": {}, "router_data": ROUTER_DATA}
        await self.sio.connect(
            f"{self.url}?token={uuid.uuid4()}",
            auth={"event": hydrate},
            transports=["websocket"],
            namespaces=["/_event"],
            socketio_path="/_event",
            wait_timeout=20,
        )

    async def send(self, name: str, **payload: Any) -> None:
        await self.sio.emit(
            "event", {"name": name, "payload": payload, "router_data": ROUTER_DATA}, namespace="/_event"
        )

    def deltas(self, state: str) -> list[dict[str, Any]]:
        return [update["delta"][state] for update in self.updates if state in (update.get("delta") or {})]

    async def until(self, check: Callable[[], object], timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "the backend did not answer in time"
            await asyncio.sleep(0.02)


@BOTH_STATE_MANAGERS
def test_a_raw_client_naming_another_browsers_job_reads_and_stops_nothing(
    open_page: Callable[..., JobPage], web: WebApp, c: Clients
) -> None:
    victim = open_page()
    theirs = victim.submit(BIG_N)
    victim.wait_running(theirs)

    async def attack() -> RawPage:
        raw = RawPage(web)
        await raw.open()
        for name in (f"{JOBS}.cancel", f"{JOBS}.rerun", f"{LOG}.open", f"{RESULT}.open", f"{JOBS}.dismiss"):
            await raw.send(name, job_id=theirs)
        for _ in range(10):  # a page load's lookup, asked for again and again: its jobs only, none here
            await raw.send(f"{JOBS}.load_jobs")
            await raw.send(f"{JOBS}.watch")
        # Events of a page run in order: once this one's change arrives, all of the above have run.
        await raw.send(f"{NOTIFY}.set_permission", permission="denied")
        await raw.until(lambda: any(d.get("permission_rx_state_") == "denied" for d in raw.deltas(NOTIFY)))
        await raw.sio.disconnect()
        return raw

    raw = run_async(attack())
    assert theirs not in json.dumps(raw.updates), "nothing of their job reached the raw client"
    assert not [d for d in raw.deltas(JOBS) if d.get("jobs_rx_state_")], "no card at all"
    assert service.get_job(theirs, c).status is JobStatus.RUNNING
    victim.wait_running(theirs, min_step=victim.step(theirs)[0] + 1)
    service.cancel_job(theirs, c)
    victim.wait_status(theirs, "cancelled")
    victim.assert_clean()


def test_a_flood_of_events_is_cut_to_the_pages_rate_and_the_page_goes_on(web: WebApp, settings: Any) -> None:
    sent = 600

    async def flood() -> tuple[int, float, RawPage]:
        raw = RawPage(web)
        await raw.open()
        await raw.until(lambda: raw.updates)  # hydrated
        start = time.monotonic()
        for i in range(sent):
            await raw.send(f"{NOTIFY}.set_permission", permission=("granted", "denied")[i % 2])
        elapsed = time.monotonic() - start
        await asyncio.sleep(1.0)  # what was taken is done by now
        handled = len(raw.deltas(NOTIFY))
        # Its bucket refills: the page is slowed down, not shut out.
        await asyncio.sleep(1.0)
        await raw.send(f"{NOTIFY}.set_permission", permission="default")
        await raw.until(lambda: any(d.get("permission_rx_state_") == "default" for d in raw.deltas(NOTIFY)))
        await raw.sio.disconnect()
        return handled, elapsed, raw

    handled, elapsed, _ = run_async(flood())
    rate = settings.events_per_second
    # At most the burst (twice the rate) and the rate for the time the flood took (+1 s of slack).
    assert 0 < handled <= 2 * rate + rate * (elapsed + 1), (handled, elapsed)
    assert handled < sent / 2


def hold_socket(web: WebApp, source: str) -> socket.socket | None:
    """A WebSocket upgrade of the page's socket from `source`: the open connection if accepted."""
    address = urlsplit(web.backend)
    conn = socket.create_connection((address.hostname or "", address.port or 0), timeout=10, source_address=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /_event/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: {address.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    conn.sendall(request.encode())
    if conn.recv(4096).startswith(b"HTTP/1.1 101"):
        return conn
    conn.close()
    return None


def test_one_address_holds_at_most_max_sockets_and_others_are_served(
    web: WebApp, settings: Any, open_page: Callable[..., JobPage]
) -> None:
    hostile = "127.0.0.2"  # loopback, but another address than the browser's
    cap = settings.max_sockets_per_address
    with ExitStack() as held:

        def opened() -> Iterator[socket.socket]:
            for _ in range(cap + 5):
                conn = hold_socket(web, hostile)
                if conn is None:
                    return
                held.callback(conn.close)
                yield conn

        sockets = list(opened())
        assert len(sockets) == cap
        # Everyone else is served as usual meanwhile: a page opens, runs a job and sees it end.
        page = open_page()
        job_id = page.submit(200)
        page.wait_status(job_id, "succeeded")
        page.assert_clean()
        sockets[0].close()
        deadline = time.monotonic() + 10
        while (again := hold_socket(web, hostile)) is None:  # the backend notices the close
            assert time.monotonic() < deadline, "a place freed by a closed socket was not given back"
            time.sleep(0.05)
        again.close()


def test_a_page_past_the_submit_rate_is_told_when_to_try_again_and_creates_nothing(
    web: WebApp, settings: Any, c: Clients
) -> None:
    """One page submits faster than SUBMITS_PER_MINUTE allows (no worker: its jobs stay queued)."""
    burst = settings.submit_burst

    async def submit_all() -> RawPage:
        raw = RawPage(web)
        await raw.open()
        await raw.until(lambda: raw.updates)  # hydrated
        for _ in range(burst):
            await raw.send(f"{JOBS}.submit", form_data={"n": "3"})
        await raw.until(lambda: len(accepted(raw)) == burst)
        keys = set(c.redis.scan_iter(match="jobstream:job:*", count=1000))
        await raw.send(f"{JOBS}.submit", form_data={"n": "3"})
        await raw.until(lambda: any("Too many submits" in d.get("error_rx_state_", "") for d in raw.deltas(JOBS)))
        assert set(c.redis.scan_iter(match="jobstream:job:*", count=1000)) == keys, "nothing created"
        await raw.sio.disconnect()
        return raw

    raw = run_async(submit_all())
    for job_id in accepted(raw):
        service.cancel_job(job_id, c)


def accepted(raw: RawPage) -> set[str]:
    """The ids of the jobs whose cards the page was sent."""
    return {card["job_id"] for delta in raw.deltas(JOBS) for card in delta.get("jobs_rx_state_", [])}


@pytest.mark.parametrize(
    ("client", "forwarded", "hops", "address"),
    [
        ("10.0.0.5", None, 0, "10.0.0.5"),
        ("10.0.0.5", "6.6.6.6", 0, "10.0.0.5"),  # no proxy trusted: the header is the client's own
        ("10.0.0.9", "1.2.3.4", 1, "1.2.3.4"),  # one trusted proxy: the address it saw
        ("10.0.0.9", "6.6.6.6, 1.2.3.4", 1, "1.2.3.4"),  # what the client wrote before it is ignored
        ("10.0.0.9", "6.6.6.6, 1.2.3.4, 10.0.0.8", 2, "1.2.3.4"),
        ("10.0.0.9", "", 1, "10.0.0.9"),  # a proxy that said nothing: the connection's own
    ],
)
def test_behind_trusted_proxies_sockets_are_counted_by_the_address_the_proxy_saw(
    client: str, forwarded: str | None, hops: int, address: str
) -> None:
    headers = [(b"host", b"jobs.example.com")]
    if forwarded is not None:
        headers.append((b"x-forwarded-for", forwarded.encode()))
    scope = {"type": "websocket", "client": (client, 40000), "headers": headers}
    assert client_address(scope, hops) == address
