"""Fuzzing the entry points: schemathesis against the HTTP API's own schema, hypothesis on the checks
behind it (the job types' params, submit_job, the session cookie). Redis and Kafka run; no worker does, so a job the
fuzzers manage to create stays queued, is counted, and is cancelled and unqueued at the end.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import hypothesis
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from rxapp.api import api, submitted
from rxapp.session import COOKIE_NAME, cookie_value, owner_of_headers, owner_of_value
from settings import Settings
from tasks import progress, service
from tasks.clients import Clients, clients
from tasks.jobtypes import InvalidParams, JobType
from tasks.model import InvalidInput
from tasks.owners import OWNER_ID_RE
from tests.apiclient import api_client, bearer

CELERY_QUEUE = "celery"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
FUZZ = hypothesis.settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def queued(c: Clients) -> int:
    """Messages waiting in Celery's queue (no worker runs in this file)."""
    return cast(int, c.redis.llen(CELERY_QUEUE))


def job_keys(c: Clients) -> set[bytes]:
    return set(c.redis.scan_iter(match=f"{progress.KEY_PREFIX}job:*", count=1000))


# --- schemathesis: every operation of /openapi.json, positive and negative cases ------------------------


def no_traceback(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No response body may show Python's traceback or source locations."""
    assert not TRACEBACK.search(response.text), f"a traceback in the response body: {response.text[:500]!r}"


CHECKS = [
    not_a_server_error,
    no_traceback,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_asgi("/openapi.json", app=api)


@dataclass
class Answers:
    """What the schemathesis run got back: status counts and the ids of the jobs it created."""

    keys_before: set[bytes]
    queued_before: int
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def answers(settings: Settings) -> Iterator[Answers]:
    c = Clients(settings)
    c.history.migrate()  # the listings read the history store, which a running consumer would have made
    record = Answers(job_keys(c), queued(c))
    yield record
    # A later test's worker must not inherit these jobs (some have millions of steps).
    for job_id in record.accepted:
        service.cancel_job(job_id, c)
    for message in cast(list[bytes], c.redis.lrange(CELERY_QUEUE, 0, -1)):
        if json.loads(message).get("headers", {}).get("id") in record.accepted:
            c.redis.lrem(CELERY_QUEUE, 1, message.decode())


@schema.parametrize()
@FUZZ
def test_every_generated_request_gets_a_declared_answer_without_a_server_error(
    case: schemathesis.Case, answers: Answers
) -> None:
    response = case.call(headers=bearer())  # as a script with its token; tests/test_access.py tries without
    answers.statuses[response.status_code] += 1
    if response.status_code == 202:
        answers.accepted.add(response.json()["job_id"])
    case.validate_response(response, checks=CHECKS)


def test_only_requests_answered_202_created_jobs(answers: Answers, c: Clients) -> None:
    """Runs after the schemathesis test above (pytest keeps a file's order)."""
    assert answers.statuses, "the schemathesis test did not run"
    assert answers.statuses[202] == len(answers.accepted), "each 202 names a new job"
    assert answers.statuses.keys() - {202}, f"no request was refused: {answers.statuses}"
    new_keys = job_keys(c) - answers.keys_before
    assert new_keys == {progress.snapshot_key(job_id).encode() for job_id in answers.accepted}
    assert queued(c) - answers.queued_before == len(answers.accepted)


# --- hypothesis: the checks behind the API and the page ------------------------------------------------

MAX_N = 10_000_000
EVERY_CHARACTER = "".join(map(chr, range(sys.maxunicode + 1)))
WHITESPACE = "".join(ch for ch in EVERY_CHARACTER if ch.isspace())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
near_numbers = st.integers(-3, 3) | st.integers(MAX_N - 3, MAX_N + 3) | st.integers(10**19 - 1, 10**21)
digit_strings = st.builds(
    lambda before, digits, after: before + digits + after,
    st.text(st.sampled_from(WHITESPACE + "\ufeff\u200b"), max_size=3),
    st.from_regex(r"[0-9]{1,25}", fullmatch=True) | st.from_regex(r"\d{1,3}", fullmatch=True),
    st.text(st.sampled_from(WHITESPACE + "\ufeff\u200b"), max_size=3),
)
texts = st.text() | digit_strings | st.from_regex(r"\s*[+-]?[0-9_.eE]{1,12}\s*", fullmatch=True)
values = json_values | near_numbers | texts


@st.composite
def params_of(draw: st.DrawFn, catalog: dict[str, JobType]) -> tuple[str, object]:
    """A job type's name and params: its own param names (some left out, some extra) with any values."""
    job = catalog[draw(st.sampled_from(sorted(catalog)))]
    names = draw(st.lists(st.sampled_from(sorted(job.fields)), unique=True)) if job.fields else []
    params: dict[str, object] = {name: draw(values) for name in names}
    params |= draw(st.dictionaries(st.text(max_size=8), values, max_size=2))
    return job.name, draw(st.just(params) | json_values)


@FUZZ
@given(data=st.data())
def test_params_of_every_type_are_accepted_within_their_schema_or_refused_by_name(
    c: Clients, data: st.DataObject
) -> None:
    """The one check of a job's params (its type's model): what it accepts is complete, valid
    against the schema the API and the page show, and checks again to itself; what it refuses,
    it refuses naming each bad param."""
    name, params = data.draw(params_of(c.catalog))
    job = c.catalog[name]
    try:
        accepted = job.json_params(params)
    except InvalidParams as exc:
        errors = exc.errors
    else:
        errors = {}
        assert set(accepted) == set(job.fields)
        jsonschema.validate(accepted, job.schema())
        assert job.json_params(accepted) == accepted
        if name == "count":
            assert type(accepted["n"]) is int
            assert 1 <= accepted["n"] <= c.settings.max_n
    if errors:
        offered = set(params) if isinstance(params, dict) else set()
        assert set(errors) <= {n[:80] for n in offered | set(job.fields)} | {"params"}, errors
        assert all(isinstance(reason, str) and reason for reason in errors.values())


@FUZZ
@given(job_type=st.sampled_from(["count", "primes", "nope", ""]) | json_values, params=values)
def test_submit_job_with_refused_input_creates_and_enqueues_nothing(
    job_type: object, params: object, c: Clients
) -> None:
    try:
        service.check_params(job_type, params, c)
    except InvalidInput:
        pass
    else:
        hypothesis.reject()  # accepted input creates a job: not this test's subject
    keys, length = job_keys(c), queued(c)
    with pytest.raises(InvalidInput):
        service.submit_job(job_type, params, c)
    assert job_keys(c) == keys
    assert queued(c) == length


SECRET = "k" * 20 + "s" * 20
owners_ = st.from_regex(OWNER_ID_RE, fullmatch=True)
headers = (
    st.text()
    | st.lists(st.tuples(st.text(max_size=20), st.text(max_size=60)), max_size=10).map(
        lambda pairs: "; ".join(f"{name}={value}" for name, value in pairs)
    )
    | st.builds(lambda v: f"{COOKIE_NAME}={v}", st.text())
    | st.builds(lambda o, mac: f"{COOKIE_NAME}={o}.{mac}", owners_, st.text(max_size=60))
)


@FUZZ
@given(header=headers)
def test_a_cookie_header_names_an_owner_only_with_its_signature(header: str) -> None:
    owner = owner_of_headers(header, SECRET)
    assert owner is None or cookie_value(owner, SECRET) in header


@FUZZ
@given(owner=owners_, other=st.text(max_size=30), flip=st.integers(0, 42))
def test_a_signed_session_round_trips_and_any_change_breaks_it(owner: str, other: str, flip: int) -> None:
    value = cookie_value(owner, SECRET)
    assert owner_of_headers(f"x{other.replace(';', '')}=1; {COOKIE_NAME}={value}", SECRET) == owner
    assert owner_of_value(value, SECRET[::-1]) is None, "another key"
    position = len(owner) + 1 + flip % (len(value) - len(owner) - 1)
    changed = value[:position] + ("A" if value[position] != "A" else "B") + value[position + 1 :]
    assert owner_of_value(changed, SECRET) is None


# --- hypothesis through HTTP: raw bodies the schema does not describe ---------------------------------


@pytest.fixture(scope="module")
def client() -> TestClient:
    return api_client(raise_server_exceptions=False)


def refused_body(body: bytes) -> bool:
    """False for a body that would queue a job (not this test's subject)."""
    try:
        service.check_params(*submitted(json.loads(body)), clients())
    except Exception:  # noqa: BLE001 - anything that is not a good body
        return True
    return False


# Hypothesis raises the recursion limit while a test runs, which hides the 500 of deeply nested JSON
# (the server's json.loads shares the limit): that case has its own plain test below.
raw_bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps({"n": v}).encode())
    | st.tuples(st.sampled_from(["count", "primes", "text_stats", "x"]), json_values).map(
        lambda tp: json.dumps({"type": tp[0], "params": tp[1]}).encode()
    )
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(1, 500))
    | st.builds(lambda size: b'{"n": "' + b"1" * size + b'"}', st.integers(4000, 5000))
).filter(refused_body)


@FUZZ
@given(body=raw_bodies, content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-y"]))
def test_raw_bodies_are_refused_with_a_json_reason_and_create_nothing(
    client: TestClient, c: Clients, body: bytes, content_type: str
) -> None:
    keys = job_keys(c)
    response = client.post("/api/jobs", content=body, headers={"content-type": content_type})
    expected = {400, 413, 422} if content_type == "application/json" else {415}
    assert response.status_code in expected, (body[:200], response.status_code, response.text[:200])
    assert isinstance(response.json()["error"], str)
    assert not TRACEBACK.search(response.text)
    assert job_keys(c) == keys


@pytest.mark.parametrize("body", [b"[" * 2000 + b"]" * 2000, b'{"n": ' + b"[" * 1500 + b"]" * 1500 + b"}"])
def test_deeply_nested_json_is_refused_as_a_bad_body(client: TestClient, body: bytes) -> None:
    response = client.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
