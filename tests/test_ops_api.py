"""The operator's console's API (issue 16, server side), tried as an attacker first: no cookie, forged,
tampered, expired and logged-out cookies, owners' and revoked tokens, guessed passwords; then what
it shows and does, against the real Redis, broker, history store (and its consumer) and Celery workers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import httpx
import pytest
from starlette.testclient import TestClient

from rxapp.api import api
from settings import PROJECT_ROOT, Settings, SettingsError, load_settings
from stack.processes import Child, app_env, asgi_command, free_port, http_ok
from tasks import progress, queue, service
from tasks.clients import Clients, clients
from tasks.history.store import stored_record
from tasks.model import JobState, JobStatus
from tasks.ops import jobs as ops_jobs
from tasks.ops import series, sessions, workers
from tasks.ops.passwords import hash_password, parse_hash, verify_password
from tasks.tokens import OPERATOR_SCOPE, TokenStore
from tests.apiclient import api_client, bearer, script_token
from tests.conftest import wait_finished, wait_for

PASSWORD = "correct horse battery staple"
HASH = hash_password(PASSWORD)
DENIED = {"error": "operator login required: POST /api/ops/login, or an operator token (Authorization: Bearer <token>)"}

# Every route behind the login, with a request that would change something if it were let through.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/ops/jobs?limit=5", None),
    ("GET", "/api/ops/workers", None),
    ("GET", "/api/ops/stats?minutes=5", None),
    ("POST", "/api/ops/logout", {}),
    ("POST", "/api/ops/actions/cancel-queued", {"type": "nested", "confirm": True}),
    ("POST", "/api/ops/actions/rerun-failed", {"since_minutes": 60, "confirm": True}),
]


def call(client: TestClient, method: str, path: str, body: dict[str, Any] | None) -> Any:
    return client.get(path) if method == "GET" else client.post(path, json=body)


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """The console on (OPS_PASSWORD_HASH set) in this process's settings for one test; more changes
    as keyword arguments."""

    def turn_on(**values: Any) -> Settings:
        on = replace(clients().settings, ops_password_hash=HASH, **values)
        monkeypatch.setattr(clients(), "settings", on)
        return on

    turn_on()
    return turn_on


def address() -> tuple[str, int]:
    """A client address of its own: login tries are counted per address."""
    return (f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}", 40000)


def logged_in() -> TestClient:
    client = TestClient(api, client=address())
    answer = client.post("/api/ops/login", json={"password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return client


@pytest.fixture
def operator_token() -> Iterator[str]:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    token = clients().tokens.create(name, OPERATOR_SCOPE)
    yield token
    clients().tokens.revoke(name)


@dataclass(frozen=True)
class RedisState:
    """What a request could change in Redis: its keys (and which of them expire), the line of queued
    jobs, Celery's queue."""

    keys: frozenset[bytes]
    expiring: frozenset[bytes]
    line: tuple[Any, ...]
    celery_queue: int


def redis_state(c: Clients) -> RedisState:
    keys = list(c.redis.scan_iter(count=1000))
    pipe = c.redis.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    expiring = frozenset(key for key, ttl in zip(keys, pipe.execute(), strict=True) if ttl > 0)
    line = tuple(cast(list[Any], c.redis.zrange(queue.QUEUE_KEY, 0, -1)))
    return RedisState(frozenset(keys), expiring, line, int(c.redis.llen("celery")))  # type: ignore[arg-type]


def assert_unchanged(c: Clients, before: RedisState, what: str) -> None:
    """Redis is as it was `before`, but for keys that expired meanwhile (an earlier test's, say)."""
    now = redis_state(c)
    assert not now.keys - before.keys, f"{what}: keys made {sorted(now.keys - before.keys)[:5]}"
    gone = before.keys - now.keys - before.expiring
    assert not gone, f"{what}: keys deleted {sorted(gone)[:5]}"
    assert (now.line, now.celery_queue) == (before.line, before.celery_queue), what


def store_job(c: Clients, job_type: str, first_ts: float, status: JobStatus = JobStatus.SUCCEEDED, **kw: Any) -> str:
    """A job in the history store as the consumer would write it: its first and its last record."""
    job_id = kw.pop("job_id", None) or str(uuid.uuid4())
    owner, params = kw.pop("owner", "t-opsowner0000000"), kw.pop("params", {"n": 2})
    step = kw.pop("step", 2)
    end = kw.pop("end", first_ts + 1.5)
    items = [JobState(job_id, 0, 2, JobStatus.RUNNING, first_ts, job_type=job_type, owner=owner, params=params)]
    items.append(JobState(job_id, step, 2, status, end, job_type=job_type, params=params, **kw))
    records = [stored_record(f"ops-{job_id}", 0, offset, item.to_json().encode()) for offset, item in enumerate(items)]
    c.history.write([record for record in records if record is not None])
    progress.add_to_index(c.redis, job_id)  # as its submit did (else, with a complete index, it is not found)
    return job_id


@pytest.fixture
def stored_jobs(c: Clients) -> Iterator[list[str]]:
    """Jobs a test writes into the history store (store_job), deleted at its end."""
    c.history.migrate()
    made: list[str] = []
    yield made
    c.history.delete_jobs(made)


def cancel_all(c: Clients, job_ids: list[str]) -> None:
    for job_id in job_ids:
        service.cancel_job(job_id, c)


# -- the password, and the console off --------------------------------------------------------------


def test_the_hash_command_prints_a_salted_scrypt_hash_and_refuses_empty_or_short_passwords() -> None:
    def hash_of(text: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tasks.ops", "hash"]
        return subprocess.run(command, cwd=PROJECT_ROOT, input=text, capture_output=True, text=True, check=False)

    made = hash_of(PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    hashed = made.stdout.strip()
    assert hashed.startswith("scrypt$16384$8$1$")
    assert PASSWORD not in made.stdout + made.stderr
    assert verify_password(PASSWORD, parse_hash(hashed))
    assert not verify_password(PASSWORD + "x", parse_hash(hashed))
    assert hash_of(PASSWORD + "\n").stdout.strip() != hashed, "a random salt each time"
    for text, reason in (("", "empty"), ("\n", "empty"), ("short\n", "at least 12 characters")):
        refused = hash_of(text)
        assert refused.returncode == 2
        assert reason in refused.stderr
        assert refused.stdout == ""


@pytest.mark.parametrize(
    "value",
    ["not-a-hash", "scrypt$16384$8$1$c2FsdA==", "scrypt$1000$8$1$c2FsdHNhbHQ=$" + "A" * 44,
     "scrypt$16384$8$1$!!!$" + "A" * 44, "scrypt$1048576$64$16$c2FsdHNhbHQ=$" + "A" * 44, "bcrypt$2b$12$secretish"],
)  # fmt: skip
def test_a_malformed_password_hash_stops_settings_with_its_name_and_never_its_value(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**os.environ, "OPS_PASSWORD_HASH": value})
    assert "OPS_PASSWORD_HASH" in str(refused.value)
    assert value not in str(refused.value)
    assert load_settings({**os.environ, "OPS_PASSWORD_HASH": HASH}).ops_console


def test_with_the_console_off_every_ops_route_is_absent(c: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not clients().settings.ops_console, "off unless OPS_PASSWORD_HASH is set"
    client = TestClient(api, client=address())
    absent = client.get("/api/no-such-route")
    before = redis_state(c)
    for method, path, body in [*ROUTES, ("POST", "/api/ops/login", {"password": PASSWORD})]:
        answer = call(client, method, path, body)
        assert (answer.status_code, answer.json()) == (404, absent.json()), path
        assert "set-cookie" not in answer.headers
    assert_unchanged(c, before, "no request to the absent console changed anything")
    monkeypatch.setattr(api, "openapi_schema", None)
    assert not [path for path in client.get("/openapi.json").json()["paths"] if path.startswith("/api/ops")]


# -- as an attacker ---------------------------------------------------------------------------------


def test_every_route_answers_401_with_one_body_to_every_bad_credential_and_changes_nothing(
    console: Callable[..., Settings], c: Clients, stored_jobs: list[str], operator_token: str
) -> None:
    settings = clients().settings
    queued = service.submit_job("nested", {}, c, "t-victim000000000").job_id  # no worker: it stays queued
    stored_jobs.append(store_job(c, "count", time.time() - 30, JobStatus.FAILED, error="boom"))
    # A real session, then cookies made from it that must all be refused.
    real = logged_in().cookies[sessions.COOKIE_NAME]
    expires, session_id, mac = real.split(".")
    stale = logged_in()
    stale_cookie = stale.cookies[sessions.COOKIE_NAME]
    assert stale.post("/api/ops/logout", json={}).status_code == 204
    revoked_name = f"ops-revoked-{uuid.uuid4().hex[:6]}"
    revoked = clients().tokens.create(revoked_name, OPERATOR_SCOPE)
    clients().tokens.revoke(revoked_name)
    other_key = replace(settings, session_secret="y" * 40)
    old_password = replace(settings, ops_password_hash=hash_password("an older password"))
    past = int(time.time()) - 1
    credentials: dict[str, dict[str, Any]] = {
        "nothing": {},
        "forged": {"cookie": f"{sessions.COOKIE_NAME}={expires}.{'A' * 32}.{mac}"},
        "tampered expiry": {"cookie": f"{sessions.COOKIE_NAME}={int(expires) + 3600}.{session_id}.{mac}"},
        "tampered mac": {"cookie": f"{sessions.COOKIE_NAME}={expires}.{session_id}.{mac[:-2]}AA"},
        "expired": {"cookie": f"{sessions.COOKIE_NAME}={sessions.cookie_value(settings, past, session_id)}"},
        "signed with another secret": {
            "cookie": f"{sessions.COOKIE_NAME}={sessions.cookie_value(other_key, int(expires), session_id)}"
        },
        "signed for the old password": {
            "cookie": f"{sessions.COOKIE_NAME}={sessions.cookie_value(old_password, int(expires), session_id)}"
        },
        "logged out": {"cookie": f"{sessions.COOKIE_NAME}={stale_cookie}"},
        "huge": {"cookie": f"{sessions.COOKIE_NAME}={'9' * 5000}.{session_id}.{mac}"},
        "an owner's token": bearer(),
        "a revoked operator token": bearer(revoked),
        "an operator token in another scheme": {"Authorization": f"Basic {operator_token}"},
        "garbage": {"Authorization": "Bearer jst_" + "x" * 500},
        "the session id as a token": {"Authorization": f"Bearer {session_id}"},
    }
    before = redis_state(c)
    for case, headers in credentials.items():
        client = TestClient(api, headers=headers, client=address())
        for method, path, body in ROUTES:
            answer = call(client, method, path, body)
            assert (answer.status_code, answer.json()) == (401, DENIED), (case, path)
            assert "set-cookie" not in answer.headers, (case, path)
        # Bad input is not even looked at: the same 401, not a 422 that would say what is checked.
        assert client.get("/api/ops/jobs?limit=100000&id_prefix=zz").json() == DENIED, case
        broken = client.post(
            "/api/ops/actions/cancel-queued", content=b"{", headers={"content-type": "application/json"}
        )
        assert broken.json() == DENIED, case
    assert_unchanged(c, before, "no request changed anything")
    # What an HTTP client cannot send but a raw one can: characters beyond ASCII in the signature.
    assert sessions.session_of(f"{expires}.{session_id}.{mac[:-1]}\u00e9", settings, c.redis) is None
    assert service.get_job(queued, c).status is JobStatus.QUEUED
    # The real session still works, and an operator token does too.
    assert TestClient(api, cookies={sessions.COOKIE_NAME: real}).get("/api/ops/workers").status_code == 200
    assert TestClient(api, headers=bearer(operator_token)).get("/api/ops/workers").status_code == 200
    cancel_all(c, [queued])


def test_login_sets_a_strict_httponly_expiring_cookie_and_logout_ends_every_copy_of_it(
    console: Callable[..., Settings], c: Clients
) -> None:
    settings = console(ops_session_hours=2.0)
    client = TestClient(api, client=address())
    assert client.get("/api/ops/jobs").status_code == 401
    answer = client.post("/api/ops/login", json={"password": PASSWORD})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=7200"):
        assert attribute in cookie
    assert answer.headers["cache-control"] == "no-store"
    assert abs(answer.json()["expires_at"] - (time.time() + 7200)) < 5
    value = client.cookies[sessions.COOKIE_NAME]
    assert PASSWORD not in cookie
    _, session_id, _ = value.split(".")
    assert 7100 < int(c.redis.ttl(sessions.session_key(session_id))) <= 7200  # type: ignore[arg-type]
    assert client.get("/api/ops/jobs").status_code == 200
    # Someone copied the cookie; the operator logs out: the copy stops working too.
    thief = TestClient(api, cookies={sessions.COOKIE_NAME: value})
    assert thief.get("/api/ops/workers").status_code == 200
    out = client.post("/api/ops/logout", json={})
    assert out.status_code == 204
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert not c.redis.exists(sessions.session_key(session_id))
    assert thief.get("/api/ops/workers").json() == DENIED
    # A cross-site page cannot post a login or a bulk action, whatever cookie its browser holds.
    evil = {"origin": "https://evil.example"}
    assert client.post("/api/ops/login", json={"password": PASSWORD}, headers=evil).status_code == 403
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert client.post("/api/ops/login", content=b"password=x", headers=form).status_code == 415
    assert settings.ops_session_hours == 2.0


def test_wrong_passwords_are_throttled_per_address_and_logged_without_the_password(
    console: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    console(ops_logins_per_minute=3)
    guesser = TestClient(api, client=("203.0.113.7", 5000))
    other = TestClient(api, client=("198.51.100.9", 5000))
    guesser.cookies.clear()
    with caplog.at_level(logging.WARNING, logger="tasks.ops.sessions"):
        for guess in ("guess-one-0000", "guess-two-0000", "guess-three-00"):
            answer = guesser.post("/api/ops/login", json={"password": guess})
            assert (answer.status_code, answer.json()) == (401, {"error": "wrong password"})
        throttled = guesser.post("/api/ops/login", json={"password": "guess-four-000"})
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 20
        # Beyond the limit even the right password is not checked: no session for the guesser.
        right = guesser.post("/api/ops/login", json={"password": PASSWORD})
        assert right.status_code == 429
        assert "set-cookie" not in right.headers
    assert other.post("/api/ops/login", json={"password": "guess-one-0000"}).status_code == 401
    assert other.post("/api/ops/login", json={"password": PASSWORD}).status_code == 200
    refusals = [record.getMessage() for record in caplog.records]
    assert len([line for line in refusals if "203.0.113.7" in line]) == 5
    assert any("wrong password" in line for line in refusals)
    assert not [line for line in refusals if "guess-" in line or PASSWORD in line]
    for body in ({}, {"password": 5}, {"password": PASSWORD, "user": "x"}, {"password": "x" * 2000}):
        assert other.post("/api/ops/login", json=body).status_code == 422, body


def test_an_operator_token_opens_the_console_only_and_an_owner_token_never_does(
    console: Callable[..., Settings], operator_token: str, tmp_path: Any
) -> None:
    operator = TestClient(api, headers=bearer(operator_token))
    assert operator.get("/api/ops/stats?minutes=1").status_code == 200
    # It is no owner: the owners' API does not take it.
    assert operator.get("/api/jobs").status_code == 401
    assert operator.post("/api/jobs", json={"n": 5}).status_code == 401
    assert api_client().get("/api/ops/jobs").json() == DENIED
    # A token file from before scopes: its tokens are owner tokens.
    path = tmp_path / "api-tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": "old", "owner": "t-0123456789abcdef",
                                            "digest": "ab" * 32, "created": 1.0}]}))  # fmt: skip
    old = TokenStore(path)
    (entry,) = old.entries()
    assert entry.scope == "owner"
    token = old.create("console", OPERATOR_SCOPE)
    assert old.operator(token) is not None
    assert old.owner(token) is None
    env = {**os.environ, "RUN_DIR": str(tmp_path)}
    run = [sys.executable, "-m", "tasks.tokens"]
    made = subprocess.run([*run, "create", "ops-cli", "--operator"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert old.operator(made.stdout.strip()) is not None
    listed = subprocess.run([*run, "list"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    assert "ops-cli\to-" in listed.stdout
    assert "\toperator\t" in listed.stdout
    assert "\towner\t" in listed.stdout


# -- the jobs -----------------------------------------------------------------------------------


def page_through(client: TestClient, limit: int, **query: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = client.get("/api/ops/jobs", params={"limit": limit, **query, **({"before": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        rows += answer.json()["jobs"]
        if (cursor := answer.json()["next"]) is None:
            return rows


def test_every_owners_jobs_page_newest_first_without_skip_or_repeat_and_filter(
    console: Callable[..., Settings], c: Clients, stored_jobs: list[str]
) -> None:
    kind = f"ops_{uuid.uuid4().hex[:8]}"  # this test's own jobs, whatever else the store holds
    owners = ["t-aaaaaaaaaaaaaaaa", "b-" + "b" * 32, "t-cccccccccccccccc"]
    statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
    # 23 jobs, some started at the very same time: the cursor must tell them apart.
    for i in range(23):
        stored_jobs.append(
            store_job(
                c, kind, 5000.0 + i // 3, statuses[i % 3], owner=owners[i % 3], params={"n": i, "text": "x" * i * 10}
            )
        )
    expected = sorted(((c.history.job(j).started_at, j) for j in stored_jobs), reverse=True)  # type: ignore[union-attr]
    client = logged_in()
    rows = page_through(client, 4, type=kind)
    assert [row["job_id"] for row in rows] == [job_id for _, job_id in expected]
    # A job that starts while someone pages is not on the pages already read, and nothing repeats.
    first = client.get("/api/ops/jobs", params={"limit": 5, "type": kind}).json()
    stored_jobs.append(store_job(c, kind, 9000.0))
    rest = page_through(client, 5, type=kind, before=first["next"])
    assert [r["job_id"] for r in first["jobs"] + rest] == [job_id for _, job_id in expected]

    by_id = {row["job_id"]: row for row in rows}
    one = by_id[stored_jobs[4]]
    assert (one["type"], one["status"], one["step"], one["total"]) == (kind, "failed", 2, 2)
    assert (one["started_at"], one["duration"]) == (5001.0, 1.5)
    # Owners as tags: stable per owner, distinct between owners, not the owner id nor its plain hash.
    tags = [by_id[stored_jobs[i]]["owner"] for i in range(6)]
    assert tags[0] == tags[3] != tags[1] == tags[4] != tags[2] == tags[5] != tags[0]
    assert all(tag.startswith("o-") and len(tag) == 14 for tag in tags)
    assert not any(owner in json.dumps(rows) for owner in owners)
    # Params in short: bounded, whatever the job was given.
    longest = by_id[stored_jobs[22]]["params"]
    assert len(longest) == ops_jobs.PARAMS_MAX_CHARS
    assert longest.endswith("…")
    assert json.loads(by_id[stored_jobs[0]]["params"]) == {"n": 0, "text": ""}

    failed_or_cancelled = page_through(client, 100, type=kind, status=["failed", "cancelled"])
    assert {r["status"] for r in failed_or_cancelled} == {"failed", "cancelled"}
    assert len(failed_or_cancelled) == 15
    target = stored_jobs[7]
    found = client.get("/api/ops/jobs", params={"id_prefix": target[:8].upper()}).json()["jobs"]
    assert target in [row["job_id"] for row in found]
    assert all(row["job_id"].startswith(target[:8]) for row in found)
    assert client.get("/api/ops/jobs", params={"id_prefix": target}).json()["jobs"][0]["job_id"] == target
    bad_queries: list[dict[str, Any]] = [
        {"id_prefix": "zz"}, {"id_prefix": "%"}, {"id_prefix": "_"}, {"id_prefix": "a" * 37}, {"limit": 0},
        {"limit": 101}, {"status": "done"}, {"before": "yesterday"}, {"type": "t" * 101},
    ]  # fmt: skip
    for bad in bad_queries:
        assert client.get("/api/ops/jobs", params=bad).status_code == 422, bad


def test_a_running_jobs_row_takes_its_live_progress_from_redis_when_that_is_further(
    console: Callable[..., Settings], c: Clients, stored_jobs: list[str]
) -> None:
    kind = f"ops_{uuid.uuid4().hex[:8]}"
    ahead = store_job(c, kind, 6000.0, JobStatus.RUNNING, step=1, end=6001.0)
    behind = store_job(c, kind, 6001.0, JobStatus.RUNNING, step=1, end=6002.0)
    stored_jobs.extend([ahead, behind])
    live = JobState(ahead, 7, 9, JobStatus.RUNNING, time.time(), started_at=6000.0, job_type=kind, message="busy")
    c.redis.set(progress.snapshot_key(ahead), live.to_json(), ex=60)
    old = JobState(behind, 0, 2, JobStatus.QUEUED, 5999.0, job_type=kind)
    c.redis.set(progress.snapshot_key(behind), old.to_json(), ex=60)
    rows = {row["job_id"]: row for row in logged_in().get("/api/ops/jobs", params={"type": kind}).json()["jobs"]}
    assert (rows[ahead]["status"], rows[ahead]["step"], rows[ahead]["total"]) == ("running", 7, 9)
    assert rows[ahead]["started_at"] == 6000.0, "the store's start: the page's order stays"
    assert rows[ahead]["duration"] > time.time() - 6000.0 - 5
    assert (rows[behind]["status"], rows[behind]["step"]) == ("running", 1), "an older snapshot is not taken"


# -- real jobs, workers, the queue ------------------------------------------------------------------


@pytest.fixture(scope="module")
def history_consumer(settings: Settings) -> Iterator[Child]:
    """The history consumer with this process's settings (so into the store the API reads), in a
    consumer group of its own."""
    env = {**app_env(), "HISTORY_CONSUMER_GROUP": f"ops-test-{uuid.uuid4().hex[:8]}"}
    child = Child("history-ops-test", [sys.executable, "-m", "tasks.history", "consume"],
                  settings.run_dir / "logs" / "history-ops-test.log", env, die_with_parent=True)  # fmt: skip
    child.wait_until(lambda: "job logs into" in child.log(), 60, "the history consumer's start")
    yield child
    child.stop(15)


def stored_end(c: Clients, job_id: str) -> JobState:
    def ended() -> JobState | None:
        state = c.history.job(job_id)
        return state if state is not None and state.status.finished else None

    return wait_for(ended, 60, f"the store to hold the end of job {job_id}", every_s=0.1)


def test_real_jobs_are_listed_live_their_workers_shown_counted_per_minute_and_failed_ones_run_again(
    console: Callable[..., Settings],
    c: Clients,
    start_worker: Callable[..., Child],
    history_consumer: Child,
    operator_token: str,
) -> None:
    worker = start_worker("ops", concurrency=2)
    owner = clients().tokens.owner(script_token())
    ok = service.submit_job("count", {"n": 30}, c, owner).job_id
    failed = service.submit_job("steps_then_fail", {"n": 30, "fail_at": 5}, c, owner).job_id
    assert wait_finished(c, ok).status is JobStatus.SUCCEEDED
    assert wait_finished(c, failed).status is JobStatus.FAILED
    long = service.submit_job("count", {"n": 100_000}, c, owner).job_id
    operator = TestClient(api, headers=bearer(operator_token))

    # The worker: online, its main process, its pool's size, the long job among what it runs.
    def running_long() -> dict[str, Any] | None:
        listed = operator.get("/api/ops/workers").json()["workers"]
        return next((w for w in listed if w["pid"] == worker.pid and long in w["running"]), None)

    shown = wait_for(running_long, 20, "the worker to report the long job", every_s=0.2)
    assert (shown["status"], shown["concurrency"], shown["host"]) == ("online", 2, "test")
    assert time.time() - shown["last_seen"] < workers.HEARTBEAT_S + 1

    stored_end(c, ok)
    stored_end(c, failed)
    wait_for(lambda: c.history.job(long), 60, "the store to hold the long job's start", every_s=0.1)

    def live_row() -> dict[str, Any] | None:
        rows = operator.get("/api/ops/jobs", params={"id_prefix": long}).json()["jobs"]
        stored = c.history.job(long)
        return rows[0] if rows and stored and rows[0]["step"] > stored.step else None

    row = wait_for(live_row, 20, "a row further than the store", every_s=0.2)
    assert row["status"] == "running"
    rows = {r["job_id"]: r for r in page_through(operator, 100, status=["succeeded", "failed"], type="count")}
    assert rows[ok]["status"] == "succeeded"
    assert rows[ok]["owner"] == ops_jobs.owner_tag(owner, c)

    # Per minute: the two ended jobs (this minute or the one before), and the steps the worker counted.
    last_two = operator.get("/api/ops/stats?minutes=2").json()["minutes"]
    assert sum(point["finished"]["succeeded"] for point in last_two) >= 1
    assert sum(point["finished"]["failed"] for point in last_two) >= 1
    assert last_two[-1]["steps_per_s"] > 0

    # Run the failed job again: not without confirm; then once, never twice.
    refused = operator.post("/api/ops/actions/rerun-failed", json={"since_minutes": 5})
    assert refused.status_code == 400
    assert "confirm" in refused.json()["error"]
    assert refused.json()["matching"] >= 1
    assert c.history.finished_since(time.time() - 300, JobStatus.FAILED)  # nothing new was made
    done = operator.post("/api/ops/actions/rerun-failed", json={"since_minutes": 5, "confirm": True})
    assert done.status_code == 200, done.text
    answer = done.json()
    (new,) = [item["new_job_id"] for item in answer["rerun"] if item["job_id"] == failed]
    assert new in answer["new_job_ids"]
    again = service.get_job(new, c, owner)  # its owner's job, as the failed one was
    assert (again.job_type, again.params) == ("steps_then_fail", {"n": 30, "fail_at": 5})
    second = operator.post("/api/ops/actions/rerun-failed", json={"since_minutes": 5, "confirm": True}).json()
    assert failed in second["already_rerun"]
    assert failed not in [item["job_id"] for item in second["rerun"]]
    cancel_all(c, [long, new])
    wait_finished(c, long)


def test_a_worker_killed_with_sigkill_is_shown_gone_within_its_heartbeat_timeout(
    console: Callable[..., Settings], start_worker: Callable[..., Child]
) -> None:
    worker = start_worker("ops-doomed", concurrency=1)
    client = logged_in()

    def listed() -> dict[str, Any] | None:
        return next((w for w in client.get("/api/ops/workers").json()["workers"] if w["pid"] == worker.pid), None)

    online = wait_for(listed, 10, "the worker's first heartbeat")
    assert online["status"] == "online"
    assert online["concurrency"] == 1
    worker.kill_group()  # SIGKILL: no shutdown handler runs
    killed_at = time.monotonic()
    gone = wait_for(lambda: (w := listed()) and w["status"] == "gone" and w, 30, "the worker shown gone", every_s=0.2)
    assert time.monotonic() - killed_at <= workers.WORKER_TIMEOUT_S + 1
    assert gone["running"] == []
    assert gone["name"] == online["name"]


def test_a_stopped_worker_is_gone_at_once_and_the_worker_list_is_bounded(c: Clients) -> None:
    name = f"ops-beat-{uuid.uuid4().hex[:6]}@test"
    beat = workers.Heartbeat(c.settings, name, 3, lambda: ["x"])
    beat.beat()
    (info,) = [w for w in workers.list_workers(c).workers if w.name == name]
    assert (info.status, info.running, info.concurrency) == ("online", ["x"], 3)
    assert 0 < int(c.redis.ttl(workers.worker_key(name))) <= workers.GONE_KEEP_S + 60  # type: ignore[arg-type]
    beat.stop()
    (info,) = [w for w in workers.list_workers(c).workers if w.name == name]
    assert (info.status, info.running) == ("gone", [])
    # Workers gone for longer than GONE_KEEP_S are dropped by the next heartbeat of any worker.
    old = f"ops-old-{uuid.uuid4().hex[:6]}@test"
    workers.Heartbeat(c.settings, old, 1, list).beat(now=time.time() - workers.GONE_KEEP_S - 5)
    assert old not in [w.name for w in workers.list_workers(c).workers]
    beat.beat()
    assert c.redis.zscore(workers.WORKERS_KEY, old) is None


def test_the_series_are_bounded_whatever_they_are_fed(console: Callable[..., Settings], c: Clients) -> None:
    now = time.time()
    # Three hours of figures, a minute at a time (what three hours of workers would write).
    for back in range(180, -1, -1):
        at = now - back * 60
        series.count_steps(c.redis, 10, at)
        series.note_queue_depth(c.redis, back % 7, at)
    for figure in (series.STEPS, series.QUEUE):
        keys = list(c.redis.scan_iter(match=f"{series.SERIES_PREFIX}{figure}:*", count=1000))
        assert len(keys) <= series.KEEP_MINUTES + 1
        ttls = [int(c.redis.ttl(key)) for key in keys]  # type: ignore[arg-type]
        assert all(0 < ttl <= (series.KEEP_MINUTES + 1) * 60 for ttl in ttls), ttls
    series.note_queue_depth(c.redis, 1, now)
    points = logged_in().get("/api/ops/stats", params={"minutes": 60}).json()["minutes"]
    assert len(points) == 60
    assert [p["minute"] for p in points] == sorted(p["minute"] for p in points)
    assert points[-1]["minute"] == series.minute_of(time.time())
    assert points[-2]["steps_per_s"] >= 10 / 60
    assert points[-2]["queue_depth"] >= 1, "the deepest of the minute is kept"
    for bad in (0, 61, "x"):
        assert logged_in().get("/api/ops/stats", params={"minutes": bad}).status_code == 422


def test_cancel_queued_asks_for_confirmation_then_cancels_that_type_only_a_bounded_number_a_call(
    console: Callable[..., Settings], c: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No worker runs in this test: the jobs stay queued.
    mine = [service.submit_job("nested", {"label": f"n{i}"}, c, "t-queuer000000000").job_id for i in range(3)]
    others = [service.submit_job("silent", {"seconds": 1}, c, "t-queuer000000000").job_id for _ in range(2)]
    client = logged_in()
    before = redis_state(c)
    for body in ({"type": "nested"}, {"type": "nested", "confirm": False}):
        refused = client.post("/api/ops/actions/cancel-queued", json=body)
        assert refused.status_code == 400
        assert refused.json()["matching"] == 3
        assert "confirm" in refused.json()["error"]
    assert_unchanged(c, before, "nothing done without confirm")
    bad_bodies: list[Any] = [{"type": "", "confirm": True}, {"type": "nested", "confirm": "yes"}, {"confirm": True},
                             {"type": "nested", "confirm": True, "all": True}, []]  # fmt: skip
    for bad in bad_bodies:
        assert client.post("/api/ops/actions/cancel-queued", json=bad).status_code == 422, bad
    monkeypatch.setattr(ops_jobs, "BULK_MAX", 2)
    first = client.post("/api/ops/actions/cancel-queued", json={"type": "nested", "confirm": True}).json()
    assert (len(first["cancelled"]), first["more"]) == (2, True)
    second = client.post("/api/ops/actions/cancel-queued", json={"type": "nested", "confirm": True}).json()
    assert (len(second["cancelled"]), second["more"]) == (1, False)
    assert sorted(first["cancelled"] + second["cancelled"]) == sorted(mine)
    assert first["cancelled"] == mine[:2], "longest waiting first"
    assert all(service.get_job(job_id, c).status is JobStatus.CANCELLED for job_id in mine)
    assert all(service.get_job(job_id, c).status is JobStatus.QUEUED for job_id in others)
    # The workers' view of the queue: the others wait, the longest first.
    waiting = client.get("/api/ops/workers").json()
    assert waiting["queue_depth"] >= 2
    ids = [job["job_id"] for job in waiting["longest_waiting"]]
    assert ids.index(others[0]) < ids.index(others[1])
    assert {job["type"] for job in waiting["longest_waiting"] if job["job_id"] in others} == {"silent"}
    cancel_all(c, others)


def test_rerun_failed_refuses_what_it_cannot_run_and_says_so(
    console: Callable[..., Settings], c: Clients, stored_jobs: list[str]
) -> None:
    gone_type = store_job(c, "a_type_no_longer_there", time.time() - 20, JobStatus.FAILED, error="x")
    stored_jobs.append(gone_type)
    client = logged_in()
    answer = client.post("/api/ops/actions/rerun-failed", json={"since_minutes": 2, "confirm": True}).json()
    (refusal,) = [r for r in answer["refused"] if r["job_id"] == gone_type]
    assert "unknown job type" in refusal["error"]
    assert gone_type not in answer["already_rerun"]
    for body in ({"since_minutes": 0, "confirm": True}, {"since_minutes": 10**6, "confirm": True},
                 {"since_minutes": 1.5, "confirm": True}, {"since_minutes": "60", "confirm": True}):  # fmt: skip
        assert client.post("/api/ops/actions/rerun-failed", json=body).status_code == 422, body


def test_the_schema_lists_the_console_routes_with_their_models(
    console: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "openapi_schema", None)
    schema = TestClient(api).get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/ops/login", "/api/ops/logout", "/api/ops/jobs", "/api/ops/workers", "/api/ops/stats",
                 "/api/ops/actions/cancel-queued", "/api/ops/actions/rerun-failed"):  # fmt: skip
        assert path in paths, path
    ok = paths["/api/ops/jobs"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/OpsJobPage")
    assert "401" in paths["/api/ops/workers"]["get"]["responses"]
    body = paths["/api/ops/actions/rerun-failed"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"since_minutes", "confirm"}


def test_every_job_is_listed_after_a_redis_flush_and_a_restart_of_everything(
    own_redis: tuple[Any, Settings],
    settings: Settings,
    start_worker: Callable[..., Child],
    history_consumer: Child,
    operator_token: str,
    tmp_path: Any,
) -> None:
    # Jobs run with a Redis of the test's own; the history store and the token file are the session's.
    server, own = own_redis
    oc = Clients(replace(settings, redis_url=own.redis_url))
    worker = start_worker("ops-flush", concurrency=2, REDIS_URL=own.redis_url)
    owner = clients().tokens.owner(script_token())
    jobs = [
        service.submit_job("count", {"n": 20}, oc, owner).job_id,
        service.submit_job("steps_then_fail", {"n": 30, "fail_at": 5}, oc, owner).job_id,
        service.submit_job("chatty", {"lines": 5}, oc, owner).job_id,
    ]
    finals = {job_id: wait_finished(oc, job_id) for job_id in jobs}
    for job_id in jobs:
        stored_end(oc, job_id)
    worker.kill_group()

    server.stop()  # it keeps nothing: every key is gone, snapshots, index and queue alike
    server.start()
    assert not oc.redis.keys("*")
    port = free_port()
    env = {**app_env(), "REDIS_URL": own.redis_url, "OPS_PASSWORD_HASH": HASH, "SESSION_SECRET": "s" * 32}
    restarted = Child("ops-api", asgi_command("rxapp.api:api", port), tmp_path / "api.log", env, die_with_parent=True)
    try:
        restarted.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/openapi.json"), 60, "the API serving")
        for job_id in jobs:
            answer = httpx.get(
                f"http://127.0.0.1:{port}/api/ops/jobs", params={"id_prefix": job_id}, headers=bearer(operator_token)
            )
            assert answer.status_code == 200, answer.text
            (row,) = answer.json()["jobs"]
            final = finals[job_id]
            assert (row["job_id"], row["status"], row["step"]) == (job_id, final.status.value, final.step)
    finally:
        restarted.stop()
