"""The HTTP API as a script calls it: with an API token of the test run's own."""

from __future__ import annotations

import uuid
from functools import cache

from starlette.testclient import TestClient

from rxapp.api import api
from tasks.clients import clients


@cache
def script_token() -> str:
    """A token made once per test run (the tests' RUN_DIR keeps its hash)."""
    return clients().tokens.create(f"tests-{uuid.uuid4().hex[:12]}")


def bearer(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or script_token()}"}


def api_client(token: str | None = None, raise_server_exceptions: bool = True) -> TestClient:
    """A client of the API that sends `token` (the run's own when None) with every request."""
    return TestClient(api, raise_server_exceptions=raise_server_exceptions, headers=bearer(token))
