"""A browser's identity: a signed, HttpOnly session cookie issued by the backend.

A browser is an anonymous owner of jobs. The first time its page opens the socket without a valid
`jobstream_session` cookie, the backend makes it an owner id and puts the signed cookie into that
connection's headers, so the page is that owner at once. The server behind the socket (granian)
cannot set a cookie on a WebSocket handshake, so the page's first load then posts a short-lived
signed ticket for that owner to `/api/session`, whose answer sets
`jobstream_session=<owner>.<signature>; HttpOnly; SameSite=Lax` for good. Every later socket of the
browser, in any tab, sends it; page events read the owner from the connection's headers, which the
client cannot change after the handshake. Scripts cannot read it (HttpOnly), other sites' pages do
not send it (SameSite), and without SESSION_SECRET nobody can make one.

The same wrapper caps the sockets one client address holds open (MAX_SOCKETS_PER_ADDRESS).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import uuid
from typing import Any

from reflex_base.config import get_config
from reflex_base.constants import Endpoint
from starlette.types import ASGIApp, Receive, Scope, Send

from settings import Settings, SettingsError
from tasks.clients import clients
from tasks.owners import is_owner_id

COOKIE_NAME = "jobstream_session"
MAX_AGE_S = 400 * 24 * 3600  # browsers cap a cookie's life at 400 days
BROWSER_PREFIX = "b-"
# Marks a connection whose session the backend made just now (a client's own value is dropped).
NEW_SESSION_HEADER = b"x-jobstream-new-session"
# A ticket turns into the cookie within this long after the page that got it loaded.
TICKET_TTL_S = 300
SESSION_PATH = "/api/session"


def signature(owner: str, secret: str, purpose: str = COOKIE_NAME) -> str:
    mac = hmac.new(secret.encode(), f"{purpose}:{owner}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _signed(value: str, mac: str, secret: str, purpose: str) -> bool:
    # As bytes: compare_digest refuses str with characters beyond ASCII, which a client may send.
    return hmac.compare_digest(mac.encode(), signature(value, secret, purpose).encode())


def cookie_value(owner: str, secret: str) -> str:
    return f"{owner}.{signature(owner, secret)}"


def owner_of_value(value: str, secret: str) -> str | None:
    """The owner a session cookie's value names, if its signature is right; None otherwise."""
    owner, _, mac = value.partition(".")
    return owner if is_owner_id(owner) and _signed(owner, mac, secret, COOKIE_NAME) else None


def ticket(owner: str, secret: str, now: float) -> str:
    """A short-lived proof, for the page to hand to /api/session, that this connection is `owner`."""
    body = f"{owner}.{int(now) + TICKET_TTL_S}"
    return f"{body}.{signature(body, secret, 'ticket')}"


def owner_of_ticket(value: str, secret: str, now: float) -> str | None:
    """The owner a ticket names, if it is signed and not expired; None otherwise."""
    body, _, mac = value.rpartition(".")
    owner, _, expires = body.partition(".")
    if not (is_owner_id(owner) and expires.isdigit() and len(expires) < 12 and _signed(body, mac, secret, "ticket")):
        return None
    return owner if now <= int(expires) else None


def session_cookie(cookie_header: str, cookie_name: str = COOKIE_NAME) -> str:
    """The session cookie's value (or another cookie's) in a Cookie header ('' when it has none)."""
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == cookie_name:
            return value.strip()
    return ""


def owner_of_headers(cookie_header: str, secret: str) -> str | None:
    """The browser owner a connection's Cookie header proves, or None."""
    return owner_of_value(session_cookie(cookie_header), secret) if cookie_header else None


def is_new_session(state: Any) -> bool:
    """Whether the backend made the page's session on this connection (its cookie is to be set)."""
    return state.router.headers.raw_headers.get(NEW_SESSION_HEADER.decode()) == "1"


def keep_session_script(owner: str, settings: Settings, now: float) -> str:
    """The script that has the browser keep its new session: it posts the ticket to /api/session."""
    url = settings.api_url.rstrip("/") + SESSION_PATH
    body = json.dumps({"ticket": ticket(owner, settings.session_secret, now)})
    options = {"method": "POST", "credentials": "include", "headers": {"content-type": "application/json"}}
    return f"fetch({json.dumps(url)}, {{...{json.dumps(options)}, body: {json.dumps(body)}}}).catch(() => {{}})"


def page_owner(state: Any) -> str | None:
    """The owner of the page whose event a state handles: the browser its socket's session cookie
    names (the headers of the socket's handshake, never anything the event carries)."""
    return owner_of_headers(state.router.headers.cookie, clients().settings.session_secret)


def new_browser_owner() -> str:
    return BROWSER_PREFIX + uuid.uuid4().hex


def set_cookie_header(value: str, secure: bool) -> str:
    """The Set-Cookie value that keeps a session: HttpOnly, SameSite=Lax, for 400 days."""
    attributes = f"{COOKIE_NAME}={value}; Path=/; Max-Age={MAX_AGE_S}; HttpOnly; SameSite=Lax"
    return attributes + ("; Secure" if secure else "")


def client_address(scope: Scope, trusted_hops: int) -> str:
    """The client's address: the connection's own, or, behind `trusted_hops` reverse proxies
    (Reflex's trusted_proxy_hops, REFLEX_TRUSTED_PROXY_HOPS), the one the outermost trusted proxy
    saw, from X-Forwarded-For (read as Reflex reads it; what a client puts there itself is ignored)."""
    address = str((scope.get("client") or ("?", 0))[0])
    if trusted_hops:
        forwarded = b",".join(value for name, value in scope.get("headers", []) if name == b"x-forwarded-for")
        hops = [ip.strip() for ip in forwarded.decode("latin-1").split(",") if ip.strip()]
        if len(hops) >= trusted_hops:
            address = hops[-trusted_hops]
    return address


class Sessions:
    """ASGI wrapper of the backend: gives each page socket a session, and caps sockets per address."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        """Raises SettingsError without SESSION_SECRET: the backend does not serve without one."""
        if not settings.session_secret:
            raise SettingsError(
                "SESSION_SECRET is not set: it signs the browsers' session cookies. `make run` makes one and keeps "
                "it in <RUN_DIR>/session-secret; elsewhere set it to 32 random characters or more "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        self.app = app
        self.settings = settings
        self.event_path = "/" + get_config().prepend_backend_path(Endpoint.EVENT.value).strip("/")
        self.trusted_hops = get_config().trusted_proxy_hops
        self.open_sockets: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or not scope["path"].startswith(self.event_path):
            await self.app(scope, receive, send)
            return
        address = client_address(scope, self.trusted_hops)
        if self.open_sockets[address] >= self.settings.max_sockets_per_address:
            await send({"type": "websocket.close", "code": 1008, "reason": "too many sockets from this address"})
            return
        scope = self._with_session(scope)
        self.open_sockets[address] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open_sockets[address] -= 1
            if self.open_sockets[address] <= 0:
                del self.open_sockets[address]

    def _with_session(self, scope: Scope) -> Scope:
        """The scope as the app sees it: with its valid session cookie, or a new one (marked new)."""
        headers = [(name, value) for name, value in scope.get("headers", []) if name != NEW_SESSION_HEADER]
        cookies = b"; ".join(value for name, value in headers if name == b"cookie").decode("latin-1")
        if owner_of_headers(cookies, self.settings.session_secret) is not None:
            return {**scope, "headers": headers}
        value = cookie_value(new_browser_owner(), self.settings.session_secret)
        parts = [part.strip() for part in cookies.split(";") if part.strip()]
        kept = "; ".join(part for part in parts if part.partition("=")[0].strip() != COOKIE_NAME)
        merged = f"{kept}; {COOKIE_NAME}={value}" if kept else f"{COOKIE_NAME}={value}"
        headers = [(name, v) for name, v in headers if name != b"cookie"]
        headers += [(b"cookie", merged.encode("latin-1")), (NEW_SESSION_HEADER, b"1")]
        return {**scope, "headers": headers}


def sessions(settings: Settings) -> Any:
    """The wrapper as Reflex's api_transformer takes it."""
    return lambda backend: Sessions(backend, settings)
