"""What `make run` (and the tests) make for access on this machine: the session secret the web app
signs its cookies with, and a ready API token for local scripts, both kept under RUN_DIR (mode 600).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from settings import Settings
from tasks.tokens import TokenStore, tokens_path

LOCAL_TOKEN_NAME = "local"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    os.chmod(path, 0o600)  # also when the file was there with wider rights


def kept_secret(settings: Settings) -> str:
    """SESSION_SECRET when set, else the one kept in <RUN_DIR>/session-secret (made once)."""
    if settings.session_secret:
        return settings.session_secret
    path = settings.run_dir / "session-secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(32)
    _write_private(path, secret)
    return secret


def local_token(settings: Settings) -> tuple[str, Path]:
    """A valid API token for scripts on this machine, kept in <RUN_DIR>/api-token: the one there,
    or a new one named 'local' (replacing a revoked or lost one)."""
    path = settings.run_dir / "api-token"
    store = TokenStore(tokens_path(settings))
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if store.owner(token) is not None:
            os.chmod(path, 0o600)
            return token, path
    if any(info.name == LOCAL_TOKEN_NAME for info in store.entries()):
        store.revoke(LOCAL_TOKEN_NAME)
    token = store.create(LOCAL_TOKEN_NAME)
    _write_private(path, token)
    return token, path
