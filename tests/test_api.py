"""The HTTP API: in process for the many input cases, and for real on the Reflex backend."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from starlette.testclient import TestClient

from rxapp.api import api
from stack.processes import Child
from tasks.clients import Clients
from tests.conftest import WebApp, wait_for


@pytest.fixture
def client() -> TestClient:
    return TestClient(api, raise_server_exceptions=False)


def job_keys(c: Clients) -> set[bytes]:
    return set(c.redis.scan_iter("jobstream:job:*"))


def test_submit_answers_202_with_a_queued_job(client: TestClient, c: Clients) -> None:
    response = client.post("/api/jobs", json={"n": 25})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert (body["step"], body["total"]) == (0, 25)
    uuid.UUID(body["job_id"], version=4)
    assert client.get(f"/api/jobs/{body['job_id']}").json()["job_id"] == body["job_id"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"n": 0}, 422, "whole number from 1 to"),
        ({"n": -1}, 422, "whole number from 1 to"),
        ({"n": 1.5}, 422, "whole number from 1 to"),
        ({"n": ""}, 422, "whole number from 1 to"),
        ({"n": "words"}, 422, "whole number from 1 to"),
        ({"n": 10**40}, 422, "whole number from 1 to"),
        ({"n": True}, 422, "whole number from 1 to"),
        ({"n": None}, 422, "whole number from 1 to"),
        ({"n": [5]}, 422, "whole number from 1 to"),
        ({}, 422, 'with "n"'),
        ([5], 422, 'with "n"'),
        ("5", 422, 'with "n"'),
        (None, 422, 'with "n"'),
    ],
)
def test_every_bad_n_is_refused_with_a_reason_and_creates_nothing(
    client: TestClient, c: Clients, body: object, status: int, message: str
) -> None:
    before, queued = job_keys(c), c.redis.llen("celery")
    response = client.post("/api/jobs", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]
    assert job_keys(c) == before
    assert c.redis.llen("celery") == queued


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [(b"not json", 400, "must be JSON"), (b"\xff\xfe", 400, "must be JSON"), (b"", 400, "must be JSON"),
     (b'{"n": 5' + b" " * 5000 + b"}", 413, "at most 4096 bytes")],
)  # fmt: skip
def test_bodies_that_are_not_json_or_too_large(client: TestClient, content: bytes, status: int, message: str) -> None:
    response = client.post("/api/jobs", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "nope", "1", str(uuid.uuid1()), "%2e%2e"])
def test_unknown_or_malformed_ids_answer_404(client: TestClient, job_id: str) -> None:
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    response = client.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 404
    assert response.json() == {"error": "no such job"}


def test_the_openapi_schema_describes_the_three_routes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel"} <= set(schema["paths"])
    body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["n"]


def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_api_on_the_reflex_backend_runs_and_cancels_jobs(web: WebApp, worker: Child) -> None:
    status, job = call("POST", f"{web.backend}/api/jobs", {"n": " 300 "})
    assert (status, job["status"]) == (202, "queued")
    url = f"{web.backend}/api/jobs/{job['job_id']}"
    done = wait_for(lambda: (s := call("GET", url)[1])["status"] == "succeeded" and s, what="the job to succeed")
    assert (done["step"], done["total"]) == (300, 300)

    _, long_job = call("POST", f"{web.backend}/api/jobs", {"n": 1_000_000})
    wait_for(lambda: call("GET", f"{web.backend}/api/jobs/{long_job['job_id']}")[1]["step"] > 0, what="it to run")
    status, _ = call("POST", f"{web.backend}/api/jobs/{long_job['job_id']}/cancel")
    assert status == 200
    wait_for(lambda: call("GET", f"{web.backend}/api/jobs/{long_job['job_id']}")[1]["status"] == "cancelled",
             what="the cancel")  # fmt: skip
    assert call("POST", f"{web.backend}/api/jobs", {"n": "ten"})[0] == 422
    assert call("GET", f"{web.backend}/openapi.json")[0] == 200
