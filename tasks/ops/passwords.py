"""The operator's password, kept as an scrypt hash: `scrypt$N$r$p$<salt>$<hash>` (salt and hash in
base64). Only the standard library, so that settings.py can check a hash when it loads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCHEME = "scrypt"
# 16 MiB and about 50 ms a check here: slow enough to make guessing dear, fast enough for a login.
N, R, P = 16384, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
# What a hash from elsewhere may ask of a check: at most 128 MiB of memory.
MAX_MEMORY = 128 * 1024 * 1024


class PasswordHashError(ValueError):
    """Text that is not a hash `hash_password` makes (the message never holds the text)."""


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __str__(self) -> str:
        encode = base64.b64encode
        return f"{SCHEME}${self.n}${self.r}${self.p}${encode(self.salt).decode()}${encode(self.digest).decode()}"

    @property
    def memory(self) -> int:
        return 128 * self.n * self.r * self.p


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    memory = 128 * n * r * p
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=memory + 1024 * 1024, dklen=length)


def check_password_rules(password: str) -> None:
    """PasswordHashError naming what is wrong with a new password (empty, too short, too long)."""
    if not password:
        raise PasswordHashError("the password is empty")
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordHashError(f"the password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordHashError(f"the password may be at most {MAX_PASSWORD_CHARS} characters")


def hash_password(password: str) -> str:
    """The hash string to put in OPS_PASSWORD_HASH: a random 16-byte salt, the parameters in it."""
    check_password_rules(password)
    salt = secrets.token_bytes(SALT_BYTES)
    return str(PasswordHash(N, R, P, salt, _scrypt(password, salt, N, R, P, HASH_BYTES)))


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PasswordHashError("its salt and hash must be base64") from None


def parse_hash(text: str) -> PasswordHash:
    """The parts of a hash string; PasswordHashError (saying which part, never the text) otherwise."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise PasswordHashError(f"it must look like {SCHEME}$N$r$p$<salt>$<hash>")
    if not all(part.isdigit() and len(part) <= 8 for part in parts[1:4]):
        raise PasswordHashError("its N, r and p must be whole numbers")
    n, r, p = (int(part) for part in parts[1:4])
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise PasswordHashError("its N must be a power of two, r between 1 and 64, p between 1 and 16")
    parsed = PasswordHash(n, r, p, _b64(parts[4]), _b64(parts[5]))
    if parsed.memory > MAX_MEMORY:
        raise PasswordHashError(f"its parameters need more than {MAX_MEMORY // 2**20} MiB to check")
    if len(parsed.salt) < 8 or not 16 <= len(parsed.digest) <= 64:
        raise PasswordHashError("its salt must be at least 8 bytes and its hash 16 to 64")
    return parsed


def verify_password(password: str, stored: PasswordHash) -> bool:
    """Whether `password` is the one `stored` was made from (compared in constant time)."""
    if not 0 < len(password) <= MAX_PASSWORD_CHARS:
        return False
    computed = _scrypt(password, stored.salt, stored.n, stored.r, stored.p, len(stored.digest))
    return hmac.compare_digest(computed, stored.digest)
