"""Who may do what through the API, tried as a stranger would: tokens, owners, anonymous use, and
each owner's limits. Real Redis and Kafka; a worker where a job must run."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from rxapp.api import api
from rxapp.session import COOKIE_NAME, TICKET_TTL_S, cookie_value, ticket
from settings import PROJECT_ROOT, Settings
from stack.access import local_token
from tasks import owners, progress, service
from tasks.clients import Clients, clients
from tasks.model import JobState, JobStatus
from tasks.tokens import TokenError, TokenStore, digest, tokens_path
from tests.apiclient import api_client, script_token
from tests.conftest import Child, wait_finished

ROUTES = [
    ("GET", "/api/job-types"),
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs/{job_id}"),
    ("GET", "/api/jobs/{job_id}/log"),
    ("POST", "/api/jobs/{job_id}/cancel"),
    ("POST", "/api/jobs/{job_id}/rerun"),
]


def job_keys(c: Clients) -> tuple[set[bytes], int]:
    """What a job leaves when it is created: its snapshot and owner keys, its task in Celery's queue."""
    keys = set(c.redis.scan_iter(match=f"{progress.KEY_PREFIX}job:*", count=1000))
    keys |= set(c.redis.scan_iter(match=f"{progress.KEY_PREFIX}owned-by:*", count=1000))
    return keys, int(c.redis.llen("celery"))  # type: ignore[arg-type]


def call(client: TestClient, method: str, path: str, job_id: str) -> int:
    url = path.format(job_id=job_id)
    if method == "GET":
        return client.get(url).status_code
    return client.post(url, json={"n": 5} if url == "/api/jobs" else {}).status_code


@pytest.fixture
def stranger() -> Iterator[TestClient]:
    """A client with a valid token of its own: someone else's script."""
    name = f"stranger-{uuid.uuid4().hex[:8]}"
    token = clients().tokens.create(name)
    yield api_client(token)
    clients().tokens.revoke(name)


Limits = Callable[..., Settings]


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Limits:
    """Change this process's settings (the API's) for one test."""

    def set_(**values: Any) -> Settings:
        changed = replace(clients().settings, **values)
        monkeypatch.setattr(clients(), "settings", changed)
        return changed

    return set_


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer jst_not-a-token-that-was-ever-made"},
        {"Authorization": "Bearer " + "jst_" + "x" * 5000},
        {"Authorization": "token-without-a-scheme"},
    ],
)
def test_without_a_valid_token_every_route_answers_401_and_creates_nothing(headers: dict, c: Clients) -> None:
    client = TestClient(api, headers=headers)
    job_id = api_client().post("/api/jobs", json={"n": 5}).json()["job_id"]  # somebody's job
    keys = job_keys(c)
    for method, path in ROUTES:
        answer_status = call(client, method, path, job_id)
        assert answer_status == 401, (method, path, headers)
    answer = client.get("/api/job-types")
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "token" in answer.json()["error"]
    assert job_keys(c) == keys
    assert service.get_job(job_id, c).status is JobStatus.QUEUED, "not cancelled"
    service.cancel_job(job_id, c)


def test_another_owners_job_is_not_found_and_stays_as_it_is(stranger: TestClient, c: Clients) -> None:
    mine = api_client()
    job_id = mine.post("/api/jobs", json={"n": 5}).json()["job_id"]
    keys = job_keys(c)
    for method, path in ROUTES[2:]:
        answer = stranger.request(method, path.format(job_id=job_id), json={} if method == "POST" else None)
        assert (answer.status_code, answer.json()) == (404, {"error": "no such job"}), path
    # The same answer as for an id nobody has: a job's existence is not disclosed.
    assert stranger.get(f"/api/jobs/{uuid.uuid4()}").json() == {"error": "no such job"}
    assert job_keys(c) == keys
    assert mine.get(f"/api/jobs/{job_id}").json()["status"] == "queued"
    assert mine.post(f"/api/jobs/{job_id}/cancel", json={}).json()["status"] == "cancelled"


def test_the_owner_is_recorded_in_redis_and_in_the_logs_first_record_and_survives_losing_redis(
    stranger: TestClient, c: Clients, worker: Child
) -> None:
    mine = api_client()
    owner = clients().tokens.owner(script_token())
    assert owner is not None
    job_id = mine.post("/api/jobs", json={"type": "primes", "params": {"limit": 2000}}).json()["job_id"]
    assert wait_finished(c, job_id).status is JobStatus.SUCCEEDED
    assert c.redis.get(progress.owned_by_key(job_id)) == owner.encode()
    first = c.reader.page(job_id, 0, 1).records[0]
    assert isinstance(first, JobState)
    assert first.owner == owner

    # Redis loses what it knew of the job: its owner comes back from the log, for the owner only.
    c.redis.delete(progress.snapshot_key(job_id), progress.owned_by_key(job_id))
    assert stranger.get(f"/api/jobs/{job_id}").status_code == 404
    assert stranger.get(f"/api/jobs/{job_id}/log").status_code == 404
    assert mine.get(f"/api/jobs/{job_id}").json()["status"] == "succeeded"
    assert len(mine.get(f"/api/jobs/{job_id}/log").json()["records"]) > 2
    assert c.redis.get(progress.owned_by_key(job_id)) == owner.encode(), "kept again"


def test_anonymous_use_is_off_unless_the_setting_turns_it_on(limits: Limits, stranger: TestClient, c: Clients) -> None:
    anonymous = TestClient(api)
    assert anonymous.post("/api/jobs", json={"n": 5}).status_code == 401
    limits(api_allow_anonymous=True)
    theirs = stranger.post("/api/jobs", json={"n": 5}).json()["job_id"]
    answer = anonymous.post("/api/jobs", json={"n": 5})
    assert answer.status_code == 202
    job_id = answer.json()["job_id"]
    assert service.get_job(job_id, c).owner == owners.ANONYMOUS
    # Every caller without a token is that one owner; a token's jobs stay the token's.
    assert TestClient(api).get(f"/api/jobs/{job_id}").status_code == 200
    assert anonymous.get(f"/api/jobs/{theirs}").status_code == 404
    assert stranger.get(f"/api/jobs/{job_id}").status_code == 404
    # A token that is not valid is refused even then: it is a mistake, not an anonymous call.
    bad = TestClient(api, headers={"Authorization": "Bearer jst_revoked"})
    assert bad.get(f"/api/jobs/{job_id}").status_code == 401
    for job in (job_id, theirs):
        service.cancel_job(job, c)


def test_a_burst_past_the_submit_rate_gets_429_with_retry_after_and_creates_nothing(
    limits: Limits, stranger: TestClient, c: Clients
) -> None:
    limits(submit_burst=3, submits_per_minute=6)  # 3 at once, then one every 10 s
    client = api_client(clients().tokens.create(f"burst-{uuid.uuid4().hex[:8]}"))
    accepted = [client.post("/api/jobs", json={"n": 5}) for _ in range(3)]
    assert [a.status_code for a in accepted] == [202] * 3
    keys = job_keys(c)
    for _ in range(5):
        refused = client.post("/api/jobs", json={"n": 5})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        assert "Too many submits" in refused.json()["error"]
    assert job_keys(c) == keys, "nothing created for the refused ones"
    # Another owner is not slowed down by it.
    assert stranger.post("/api/jobs", json={"n": 5}).status_code == 202
    for answer in accepted:
        service.cancel_job(answer.json()["job_id"], c)


def test_an_owner_past_max_unfinished_jobs_gets_429_across_submits_and_reruns(limits: Limits, c: Clients) -> None:
    limits(max_unfinished_jobs=2)
    token = clients().tokens.create(f"quota-{uuid.uuid4().hex[:8]}")
    client = api_client(token)
    first = client.post("/api/jobs", json={"n": 5}).json()["job_id"]
    client.post("/api/jobs", json={"n": 5})
    keys = job_keys(c)
    refused = client.post("/api/jobs", json={"n": 5})
    assert refused.status_code == 429
    assert "MAX_UNFINISHED_JOBS" in refused.json()["error"]
    assert job_keys(c) == keys
    client.post(f"/api/jobs/{first}/cancel", json={})
    # A finished job of theirs run again counts as a submit: one place is free now, then none.
    assert client.post(f"/api/jobs/{first}/rerun", json={}).status_code == 202
    assert client.post(f"/api/jobs/{first}/rerun", json={}).status_code == 429
    for job_id in owners.recent(c.redis, clients().tokens.owner(token) or ""):
        service.cancel_job(job_id, c)


def script_tokens_are_kept_as_hashes_in_a_private_file_and_revoking_one_locks_it_out(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create("ci")
    assert token.startswith("jst_")
    assert len(token) > 40
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text
    assert digest(token) in text
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600
    owner = store.owner(token)
    assert owner is not None
    assert owner.startswith("t-")
    assert store.owner(token + "x") is None
    assert store.owner(token[:-1]) is None
    with pytest.raises(TokenError, match="exists"):
        store.create("ci")
    for name in ("", "-x", "a b", "x" * 65, "../etc", "naïve"):
        with pytest.raises(TokenError, match="a token name"):
            store.create(name)
    other = store.create("other")
    store.revoke("ci")
    assert store.owner(token) is None
    assert store.owner(other) is not None
    with pytest.raises(TokenError, match="no token is named ci"):
        store.revoke("ci")
    # A new token of the old name is a new owner: it gets none of the revoked one's jobs.
    assert store.owner(store.create("ci")) != owner


def test_the_tokens_command_creates_lists_and_revokes(tmp_path: Path, c: Clients) -> None:
    env = {**os.environ, "RUN_DIR": str(tmp_path)}

    def tokens(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tasks.tokens", *args]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)

    made = tokens("create", "nightly-report")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    listed = tokens("list")
    assert "nightly-report" in listed.stdout
    assert token not in listed.stdout
    assert tokens("create", "nightly-report").returncode == 2
    assert "exists" in tokens("create", "nightly-report").stderr
    assert tokens("create", "bad name").returncode == 2
    assert tokens("revoke", "nobody").returncode == 2
    # The API reads the same file: the token works until it is revoked.
    store = TokenStore(tmp_path / "api-tokens.json")
    assert store.owner(token) is not None
    assert tokens("revoke", "nightly-report").returncode == 0
    assert store.owner(token) is None


def test_make_run_keeps_a_ready_token_for_local_scripts(tmp_path: Path, settings: Settings) -> None:
    local = replace(settings, run_dir=tmp_path)
    token, path = local_token(local)
    assert path == tmp_path / "api-token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = TokenStore(tokens_path(local))
    assert store.owner(token) is not None
    assert local_token(local) == (token, path), "the same token on the next run"
    store.revoke("local")
    renewed, _ = local_token(local)
    assert renewed != token
    assert store.owner(renewed) is not None


def test_the_session_route_sets_the_cookie_for_a_valid_ticket_only() -> None:
    """What /api/session does for a page, and for anyone else who posts to it."""
    secret = clients().settings.session_secret
    assert len(secret) >= 32, "the tests' app secret"
    owner = f"b-{uuid.uuid4().hex}"
    client = TestClient(api)  # a page's fetch carries no token
    now = time.time()

    def post(value: object, **headers: str) -> Any:
        return client.post("/api/session", json={"ticket": value}, headers=headers)

    refused = {
        "forged": f"{owner}.{int(now) + 60}.{'A' * 43}",
        "another key": ticket(owner, "x" * 40, now),
        "expired": ticket(owner, secret, now - TICKET_TTL_S - 1),
        "a cookie, not a ticket": cookie_value(owner, secret),
        "not text": 12,
        "huge": "b-" + "a" * 100_000,
    }
    for case, value in refused.items():
        answer = post(value)
        assert answer.status_code in (403, 413), case
        assert "set-cookie" not in answer.headers, case
    assert client.post("/api/session", content=b"ticket=1", headers={"content-type": "text/plain"}).status_code == 415
    assert post(ticket(owner, secret, now), origin="https://evil.example").status_code == 403

    answer = post(ticket(owner, secret, now))
    assert answer.status_code == 204
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}={cookie_value(owner, secret)};")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert answer.headers["cache-control"] == "no-store"
