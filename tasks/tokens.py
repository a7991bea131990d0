"""API tokens: a script is an owner of jobs through a token it sends as `Authorization: Bearer ...`.

Tokens are kept in `<RUN_DIR>/api-tokens.json` (mode 600) as SHA-256 hashes only: the file gives
no token away. A token is 256 random bits, so a plain hash is enough (no salt, no slow hash: there
is nothing to guess). Each token owns the jobs submitted with it; revoking it makes them
unreachable through the API (they stay in their log until retention deletes them).

A token has a scope. An owner token (the default, and every token kept before scopes) owns jobs
through /api/jobs and never opens the operator's console. An operator token (`--operator`) opens
/api/ops and nothing else: it is no owner (the owner routes answer it 401), so a console's key never
doubles as a script's, and a leaked script token never reaches every owner's jobs.

    python -m tasks.tokens create NAME     prints a new token, once
    python -m tasks.tokens create NAME --operator
    python -m tasks.tokens revoke NAME
    python -m tasks.tokens list
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from settings import Settings, get_settings

TOKEN_PREFIX = "jst_"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# A token is its prefix and 43 characters of base64url (32 bytes); anything longer is not one.
TOKEN_MAX_CHARS = 100
OWNER_SCOPE = "owner"
OPERATOR_SCOPE = "operator"
SCOPES = (OWNER_SCOPE, OPERATOR_SCOPE)


class TokenError(ValueError):
    """A token name that cannot be used, or a token file that cannot be read."""


@dataclass(frozen=True)
class TokenInfo:
    """What is kept of a token: its name, the owner id its jobs are recorded under, its hash, and
    its scope (a file written before scopes has none: its tokens are owner tokens)."""

    name: str
    owner: str
    digest: str
    created: float
    scope: str = OWNER_SCOPE


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_path(settings: Settings) -> Path:
    return settings.run_dir / "api-tokens.json"


class TokenStore:
    """The token file, read again only when it changed (the web process checks a token per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._by_digest: dict[str, TokenInfo] = {}

    def _load(self) -> list[TokenInfo]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise TokenError(f"the token file {self.path} cannot be read: {exc}") from exc
        return [TokenInfo(**entry) for entry in raw.get("tokens", [])]

    def owner(self, token: str) -> str | None:
        """The owner id of a valid owner token; None for anything else (unknown, revoked, malformed,
        an operator token)."""
        info = self.lookup(token)
        return info.owner if info is not None and info.scope == OWNER_SCOPE else None

    def operator(self, token: str) -> TokenInfo | None:
        """What is kept of a valid operator token; None for anything else (an owner token too)."""
        info = self.lookup(token)
        return info if info is not None and info.scope == OPERATOR_SCOPE else None

    def lookup(self, token: str) -> TokenInfo | None:
        """What is kept of a valid token, whatever its scope; None for anything else."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > TOKEN_MAX_CHARS:
            return None
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = (0, 0)
        if seen != self._seen:
            self._by_digest = {info.digest: info for info in self._load()}
            self._seen = seen
        # Looked up by its hash: timing tells at most something of a hash, nothing of a token.
        return self._by_digest.get(digest(token))

    def entries(self) -> list[TokenInfo]:
        return self._load()

    def create(self, name: str, scope: str = OWNER_SCOPE) -> str:
        """A new token named `name` (a name in use is refused) of this scope; only its hash is kept."""
        if scope not in SCOPES:
            raise TokenError(f"a token's scope is one of {', '.join(SCOPES)}")
        if not NAME_RE.fullmatch(name):
            raise TokenError("a token name is 1 to 64 letters, digits, '.', '_' or '-', and starts with no symbol")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._editing() as tokens:
            if any(info.name == name for info in tokens):
                raise TokenError(f"a token named {name} exists: revoke it first, or choose another name")
            owner = f"{'o' if scope == OPERATOR_SCOPE else 't'}-{secrets.token_hex(8)}"
            tokens.append(TokenInfo(name, owner, digest(token), time.time(), scope))
        return token

    def revoke(self, name: str) -> None:
        with self._editing() as tokens:
            kept = [info for info in tokens if info.name != name]
            if len(kept) == len(tokens):
                raise TokenError(f"no token is named {name}")
            tokens[:] = kept

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[TokenInfo]]:
        """The tokens to change in place, written back atomically (mode 600) under a lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tokens = self._load()
            yield tokens
            temporary = self.path.with_suffix(".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"tokens": [asdict(info) for info in tokens]}, out, indent=1)
            os.replace(temporary, self.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.tokens", description="Create, revoke and list API tokens.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="print a new token (shown once)")
    create.add_argument("name")
    create.add_argument(
        "--operator", action="store_true", help="a token for the operator's console (/api/ops), not an owner of jobs"
    )
    commands.add_parser("revoke", help="revoke a token: its scripts get 401 from then on").add_argument("name")
    commands.add_parser("list", help="the tokens' names, owners, scopes and creation times (never the tokens)")
    args = parser.parse_args(argv)
    store = TokenStore(tokens_path(get_settings()))
    try:
        if args.command == "create":
            print(store.create(args.name, OPERATOR_SCOPE if args.operator else OWNER_SCOPE))
        elif args.command == "revoke":
            store.revoke(args.name)
            print(f"revoked {args.name}")
        else:
            for info in store.entries():
                created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.created))
                print(f"{info.name}\t{info.owner}\t{info.scope}\t{created} UTC")
    except TokenError as exc:
        print(f"tokens: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
