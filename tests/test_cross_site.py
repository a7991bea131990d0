"""Other sites cannot drive Jobstream from their visitors' browsers: POSTs only as JSON and from the
app's own origins, CORS for those origins only, the socket refuses a foreign Origin, and the
backend answers only the host names it is configured for (no DNS rebinding)."""

from __future__ import annotations

import base64
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext
from starlette.testclient import TestClient

from settings import Settings
from tasks import progress
from tasks.clients import Clients
from tests.apiclient import api_client, bearer
from tests.conftest import WebApp
from tests.test_fuzz import job_keys

EVIL = "http://evil.example"


@pytest.fixture
def client() -> TestClient:
    return api_client()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-type": "text/plain"}, 415),  # what a plain cross-site form can send
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
        ({"content-type": "multipart/form-data; boundary=x"}, 415),
        ({}, 415),
        ({"content-type": "application/json", "origin": EVIL}, 403),
        ({"content-type": "application/json", "origin": "null"}, 403),  # a sandboxed or file page
        ({"content-type": "text/plain", "origin": EVIL}, 403),
    ],
)
def test_a_post_not_sent_as_json_or_from_another_site_is_refused_and_creates_nothing(
    client: TestClient, c: Clients, headers: dict[str, str], status: int
) -> None:
    keys = job_keys(c)
    answer = client.post("/api/jobs", content=b'{"n": 5}', headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"]
    assert job_keys(c) == keys


def test_a_post_from_the_apps_own_origin_or_a_script_goes_through(
    client: TestClient, c: Clients, settings: Settings
) -> None:
    for headers in ({"origin": settings.allowed_origins[0]}, {}):
        answer = client.post("/api/jobs", json={"n": 5}, headers=headers)
        assert answer.status_code == 202
        assert client.post(f"/api/jobs/{answer.json()['job_id']}/cancel", json={}, headers=headers).status_code == 200


def test_a_cancel_from_a_cross_site_form_cancels_nothing(client: TestClient, c: Clients) -> None:
    job_id = client.post("/api/jobs", json={"n": 5}).json()["job_id"]
    for headers in ({"content-type": "text/plain"}, {"content-type": "application/json", "origin": EVIL}):
        assert client.post(f"/api/jobs/{job_id}/cancel", headers=headers).status_code in (403, 415)
        assert client.post(f"/api/jobs/{job_id}/rerun", headers=headers).status_code in (403, 415)
    assert client.get(f"/api/jobs/{job_id}").json()["status"] == "queued"
    assert not c.redis.exists(progress.cancel_key(job_id))
    client.post(f"/api/jobs/{job_id}/cancel", json={})


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


def test_cors_answers_the_apps_origins_only(web: WebApp, settings: Settings) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    status, headers = request(f"{web.backend}/api/jobs", "OPTIONS", {"origin": EVIL, **preflight})
    assert status == 400
    assert "access-control-allow-origin" not in headers
    for origin in settings.allowed_origins:
        status, headers = request(f"{web.backend}/api/jobs", "OPTIONS", {"origin": origin, **preflight})
        assert (status, headers.get("access-control-allow-origin")) == (200, origin)
    _, headers = request(f"{web.backend}/api/job-types", headers={"origin": EVIL, **bearer()})
    assert "access-control-allow-origin" not in headers


def test_the_backend_answers_only_its_own_host_names(web: WebApp, settings: Settings) -> None:
    url = f"{web.backend}/api/job-types"
    assert request(url, headers=bearer())[0] == 200
    for host in ("evil.example", f"evil.example:{settings.backend_port}", "localhost.evil.example"):
        assert request(url, headers={"host": host, **bearer()})[0] == 400
    assert not upgrade(web, settings.allowed_origins[0], host="evil.example").startswith("HTTP/1.1 101")


def upgrade(web: WebApp, origin: str, host: str | None = None) -> str:
    """The status line the backend answers a WebSocket upgrade of the page's socket with."""
    address = urlsplit(web.backend)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /_event/?EIO=4&transport=websocket HTTP/1.1",
        f"Host: {host or address.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Origin: {origin}",
    ]
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return conn.recv(4096).decode(errors="replace").partition("\r\n")[0]


def test_the_socket_refuses_a_page_of_another_site(web: WebApp, settings: Settings) -> None:
    assert upgrade(web, settings.allowed_origins[0]).startswith("HTTP/1.1 101")
    for origin in (EVIL, "null", f"{settings.allowed_origins[0]}.evil.example"):
        assert not upgrade(web, origin).startswith("HTTP/1.1 101"), origin


def test_a_form_on_another_site_creates_no_job(
    web: WebApp, new_context: Callable[..., BrowserContext], c: Clients
) -> None:
    """A real browser on another site posts a form to the API, as an attacker's page would."""
    keys = job_keys(c)
    page = new_context().new_page()
    form = (
        f'<form method="post" action="{web.backend}/api/jobs" enctype="text/plain">'
        '<input name=\'{"n": 5, "x": "\' value=\'"}\'></form>'
        "<script>document.forms[0].submit()</script>"
    )
    page.route(f"{EVIL}/**", lambda route: route.fulfill(body=form, content_type="text/html"))
    with page.expect_response(lambda response: "/api/jobs" in response.url) as answer:
        page.goto(f"{EVIL}/")
    assert answer.value.status == 403
    assert answer.value.request.headers.get("origin") == EVIL
    assert job_keys(c) == keys
    page.close()
