"""The operator's login: a password check rate-limited per client address, and a session that is a
signed, expiring cookie naming a session id that Redis holds until logout or expiry.

The cookie's value is `<expiry>.<session id>.<HMAC-SHA256>`, signed with a key derived from
SESSION_SECRET and from the operator's password hash (a new password ends every session). A cookie
is taken only when its signature is right, it has not expired and Redis still holds its session id:
logout deletes the id, so a copy of the cookie kept elsewhere stops working at once. Losing Redis's
data logs every operator out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
import time

import redis

from settings import Settings
from tasks import ratelimit
from tasks.ops.passwords import parse_hash, verify_password
from tasks.service import reaching_services

log = logging.getLogger(__name__)

COOKIE_NAME = "jobstream_ops"
SESSION_PREFIX = "jobstream:ops:session:"
LOGIN_BUCKET_PREFIX = "jobstream:ops:login:"
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{32}")
COOKIE_MAX_CHARS = 200


class WrongPassword(PermissionError):
    """The password is not the operator's."""


class TooManyLogins(PermissionError):
    """The client address tried more logins than OPS_LOGINS_PER_MINUTE; `retry_after_s` says when
    it may try again."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"Too many login attempts: try again in {retry_after_s} s.")
        self.retry_after_s = retry_after_s


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A key for one purpose of the console, from SESSION_SECRET (which never signs two kinds of thing)."""
    return hmac.new(settings.session_secret.encode(), f"jobstream-ops:{purpose}".encode(), hashlib.sha256).digest()


def _mac(settings: Settings, body: str) -> str:
    key = derived_key(settings, "cookie:" + settings.ops_password_hash)
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def cookie_value(settings: Settings, expires: int, session_id: str) -> str:
    """The signed value of a session cookie (what `login` sets)."""
    body = f"{expires}.{session_id}"
    return f"{body}.{_mac(settings, body)}"


def session_key(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def session_s(settings: Settings) -> int:
    return max(1, int(settings.ops_session_hours * 3600))


def login_bucket(address: str) -> str:
    # Hashed: an address (or what a proxy forwarded) may be long or odd; the key stays short and plain.
    return LOGIN_BUCKET_PREFIX + hashlib.sha256(address.encode(errors="replace")).hexdigest()[:32]


@reaching_services
def login(password: str, address: str, settings: Settings, client: redis.Redis, now: float | None = None) -> str:
    """Check the operator's password for a caller at `address` and open a session: returns the
    cookie's value. TooManyLogins past OPS_LOGINS_PER_MINUTE tries from that address (the password
    is then not even checked), WrongPassword otherwise when it is wrong. Every refusal is logged
    with the address (never the password); a success clears the address's count."""
    now = time.time() if now is None else now
    per_minute = settings.ops_logins_per_minute
    wait_s = ratelimit.take(client, login_bucket(address), per_minute / 60, per_minute, now)
    if wait_s:
        log.warning("operator login from %s refused: more than %d tries a minute", address, per_minute)
        raise TooManyLogins(max(1, math.ceil(wait_s)))
    if not verify_password(password, parse_hash(settings.ops_password_hash)):
        log.warning("operator login from %s refused: wrong password", address)
        raise WrongPassword("wrong password")
    client.delete(login_bucket(address))
    session_id = secrets.token_urlsafe(24)
    expires = int(now) + session_s(settings)
    client.set(session_key(session_id), int(now), exat=expires)
    log.info("operator login from %s: session %s", address, session_id[:6])
    return cookie_value(settings, expires, session_id)


@reaching_services
def session_of(value: str, settings: Settings, client: redis.Redis, now: float | None = None) -> str | None:
    """The session id a cookie's value holds when it is signed, unexpired and not logged out; None
    otherwise. Redis is asked only about a cookie whose signature is right."""
    if not value or len(value) > COOKIE_MAX_CHARS or not settings.ops_console:
        return None
    body, _, mac = value.rpartition(".")
    expires, _, session_id = body.partition(".")
    if not (expires.isdigit() and len(expires) <= 12 and SESSION_ID_RE.fullmatch(session_id)):
        return None
    # As bytes: compare_digest refuses str with characters beyond ASCII, which a client may send.
    if not hmac.compare_digest(mac.encode(), _mac(settings, body).encode()):
        return None
    if int(expires) <= (time.time() if now is None else now):
        return None
    return session_id if client.exists(session_key(session_id)) else None


@reaching_services
def logout(session_id: str, client: redis.Redis) -> None:
    """End the session: its cookie, wherever a copy of it is, is refused from now on."""
    client.delete(session_key(session_id))
    log.info("operator logout: session %s", session_id[:6])


def set_cookie_header(value: str, settings: Settings) -> str:
    """The Set-Cookie value of a session: HttpOnly, SameSite=Strict, for OPS_SESSION_HOURS."""
    secure = "; Secure" if settings.api_url.startswith("https://") else ""
    return f"{COOKIE_NAME}={value}; Path=/; Max-Age={session_s(settings)}; HttpOnly; SameSite=Strict{secure}"


def clear_cookie_header(settings: Settings) -> str:
    secure = "; Secure" if settings.api_url.startswith("https://") else ""
    return f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
