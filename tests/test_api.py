"""The HTTP API: in process for the many input cases, and for real on the Reflex backend."""

from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from stack.processes import Child
from tasks import service
from tasks.clients import Clients
from tasks.jobtypes import InvalidParams
from tests.apiclient import api_client, bearer
from tests.conftest import BOTH_STATE_MANAGERS, WebApp, wait_finished, wait_for
from tests.test_pipeline import assert_complete_log, read_log


@pytest.fixture
def client() -> TestClient:
    return api_client(raise_server_exceptions=False)


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
    ("body", "message", "field"),
    [
        ({"n": 0}, "greater than or equal to 1", "n"),
        ({"n": -1}, "greater than or equal to 1", "n"),
        ({"n": 1.5}, "fractional part", "n"),
        ({"n": ""}, "valid integer", "n"),
        ({"n": "words"}, "valid integer", "n"),
        ({"n": 10**40}, "less than or equal to 10000000", "n"),
        ({"n": True}, "not true or false", "n"),
        ({"n": None}, "valid integer", "n"),
        ({"n": [5]}, "valid integer", "n"),
        ({}, "n: required", "n"),
        ({"type": "count", "params": {"n": 5, "x": 1}}, "unknown parameter; the parameters of count are: n", "x"),
        ({"type": "count", "params": {}}, "n: required", "n"),
        ({"type": "count", "params": [5]}, "must be a JSON object", "params"),
        ({"type": "primes", "params": {"limit": 1}}, "greater than or equal to 2", "limit"),
        ({"type": "text_stats", "params": {"text": "", "case": "shout"}}, "at least 1 character", "text"),
        ({"type": "text_stats", "params": {"text": "x" * 3001}}, "at most 3000 characters", "text"),
        ({"type": "nope", "params": {}}, "unknown job type 'nope'; the types are: ", None),
        ({"type": ["count"]}, "unknown job type", None),
        ({"type": "count", "params": {"n": 5}, "owner": "me"}, "unknown field owner", None),
        ({"n": 5, "m": 1}, "unknown field m", None),
        ([5], "must be a JSON object", None),
        ("5", "must be a JSON object", None),
        (None, "must be a JSON object", None),
    ],
)
def test_every_bad_submit_is_refused_with_a_reason_and_creates_nothing(
    client: TestClient, c: Clients, body: object, message: str, field: str | None
) -> None:
    before, queued = job_keys(c), c.redis.llen("celery")
    response = client.post("/api/jobs", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 422
    answer = response.json()
    assert message in answer["error"]
    if field is not None:
        assert field in answer["fields"], answer
    assert job_keys(c) == before
    assert c.redis.llen("celery") == queued


def test_a_bad_enum_names_what_is_allowed(client: TestClient) -> None:
    response = client.post("/api/jobs", json={"type": "text_stats", "params": {"text": "a", "case": "shout"}})
    assert response.status_code == 422
    assert response.json()["fields"] == {"case": "Input should be 'ignore' or 'keep'"}


def test_a_typed_submit_answers_202_with_its_params_and_defaults(client: TestClient, c: Clients) -> None:
    response = client.post("/api/jobs", json={"type": "primes", "params": {"limit": 1000}})
    assert response.status_code == 202
    body = response.json()
    assert (body["type"], body["status"], body["params"]) == ("primes", "queued", {"limit": 1000, "segments": 100})
    assert body["total"] == 100  # known before it runs: one step per segment
    again = client.get(f"/api/jobs/{body['job_id']}").json()
    assert (again["type"], again["params"]) == ("primes", {"limit": 1000, "segments": 100})
    # The seed's body is a count job.
    legacy = client.post("/api/jobs", json={"n": " 12 "}).json()
    assert (legacy["type"], legacy["params"], legacy["total"]) == ("count", {"n": 12}, 12)


def test_params_larger_than_max_body_bytes_are_refused_from_any_caller(c: Clients) -> None:
    """The API's body limit holds the params in; the page's socket has no such limit, so the
    service checks the params' own size."""
    text = "word " * 600  # 3,000 characters: allowed by text_stats, too large for a 1 KiB limit
    small = Clients(replace(c.settings, max_body_bytes=1024))
    before = job_keys(c)
    with pytest.raises(InvalidParams, match="at most 1,024 bytes"):
        service.submit_job("text_stats", {"text": text}, small)
    assert job_keys(c) == before


def test_job_types_lists_every_type_with_the_schema_of_its_params(client: TestClient, c: Clients) -> None:
    types = {t["name"]: t for t in client.get("/api/job-types").json()}
    assert set(types) == set(c.catalog)
    count = types["count"]
    assert (count["title"], count["resumes"], count["on_worker_lost"]) == ("Count", True, "resume")
    n = count["params_schema"]["properties"]["n"]
    assert (n["type"], n["minimum"], n["maximum"]) == ("integer", 1, c.settings.max_n)
    assert types["text_stats"]["on_worker_lost"] == "restart"
    assert types["text_stats"]["params_schema"]["required"] == ["text"]
    assert types["every_field"]["description"].startswith("Takes one parameter of each kind")


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
    assert client.get(f"/api/jobs/{job_id}/log").status_code == 404
    response = client.post(f"/api/jobs/{job_id}/cancel", json={})
    assert response.status_code == 404
    assert response.json() == {"error": "no such job"}


def test_the_openapi_schema_describes_the_routes_and_the_params_of_every_type(client: TestClient, c: Clients) -> None:
    schema = client.get("/openapi.json").json()
    routes = {
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/log",
        "/api/jobs/{job_id}/cancel",
        "/api/job-types",
    }
    assert routes <= set(schema["paths"])
    body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    typed = {
        option["properties"]["type"]["const"]: option for option in body["oneOf"] if "type" in option["properties"]
    }
    assert set(typed) == set(c.catalog)
    components = schema["components"]["schemas"]
    assert components["count_params"]["properties"]["n"]["maximum"] == c.settings.max_n
    # An Enum's schema is a component of its own, and the params' reference to it resolves.
    colour = components["every_field_params"]["properties"]["colour"]["$ref"]
    assert components[colour.rsplit("/", 1)[1]]["enum"] == ["red", "green", "blue"]
    legacy = next(option for option in body["oneOf"] if "n" in option["properties"])
    assert legacy["properties"]["n"]["maximum"] == c.settings.max_n


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("offset=-1", "offset: Input should be greater than or equal to 0"),
        ("offset=abc", "offset: Input should be a valid integer"),
        (f"offset={2**53 + 1}", "offset: Input should be less than or equal to"),
        ("limit=0", "limit: Input should be greater than or equal to 1"),
        ("limit=10001", "limit: Input should be less than or equal to 1000"),
        ("limit=1.5", "limit: Input should be a valid integer"),
    ],
)
def test_bad_log_queries_are_refused_with_the_parameter_named(client: TestClient, query: str, message: str) -> None:
    response = client.get(f"/api/jobs/{uuid.uuid4()}/log?{query}")
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_a_queued_jobs_log_is_empty_until_a_worker_takes_it(client: TestClient) -> None:
    job_id = client.post("/api/jobs", json={"n": 10}).json()["job_id"]  # no worker in this test
    response = client.get(f"/api/jobs/{job_id}/log")
    assert response.status_code == 200
    assert response.json() == {"job_id": job_id, "records": [], "next_offset": 0, "end": True}


def test_a_jobs_log_reads_page_by_page_to_its_final_record(client: TestClient, c: Clients, worker: Child) -> None:
    n = 2500
    job_id = client.post("/api/jobs", json={"n": n}).json()["job_id"]
    wait_finished(c, job_id)
    pages: list[dict] = []
    offset = 0
    while not (pages and pages[-1]["end"]):
        response = client.get(f"/api/jobs/{job_id}/log?offset={offset}&limit=1000")
        assert response.status_code == 200
        pages.append(response.json())
        offset = pages[-1]["next_offset"]
    # The first record, 2,500 steps and the final record: pages of 1,000, 1,000 and 502.
    assert [len(page["records"]) for page in pages] == [1000, 1000, n + 2 - 2000]
    assert [page["end"] for page in pages] == [False, False, True]
    records = [record for page in pages for record in page["records"]]
    assert_complete_log(records, job_id, n)
    # The same records as another Kafka client reads from the topic.
    raw = read_log(c.settings, job_id)
    assert [(r["step"], r["status"], r["ts"]) for r in records] == [(r["step"], r["status"], r["ts"]) for r in raw]
    # At the end: nothing more, and the same place to ask again.
    tail = client.get(f"/api/jobs/{job_id}/log?offset={offset}").json()
    assert (tail["records"], tail["next_offset"], tail["end"]) == ([], offset, True)


def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", **bearer()}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@BOTH_STATE_MANAGERS
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


def test_run_again_queues_a_new_job_of_a_finished_one_and_refuses_the_rest(
    client: TestClient, c: Clients, worker: Child
) -> None:
    first = client.post("/api/jobs", json={"type": "primes", "params": {"limit": 1000, "segments": 4}}).json()
    done = wait_finished(c, first["job_id"])
    answer = client.post(f"/api/jobs/{first['job_id']}/rerun", json={})
    assert answer.status_code == 202
    again = answer.json()
    assert again["job_id"] != first["job_id"]
    assert (again["type"], again["params"], again["status"]) == ("primes", {"limit": 1000, "segments": 4}, "queued")
    assert wait_finished(c, again["job_id"]).result == done.result == {"limit": 1000, "primes": 168}
    assert client.get(f"/api/jobs/{first['job_id']}").json()["status"] == "succeeded"  # left as it was

    running = client.post("/api/jobs", json={"type": "silent", "params": {"seconds": 30}}).json()
    before = job_keys(c)
    refused = client.post(f"/api/jobs/{running['job_id']}/rerun", json={})
    assert refused.status_code == 409
    assert "has not finished yet" in refused.json()["error"]
    assert job_keys(c) == before
    client.post(f"/api/jobs/{running['job_id']}/cancel", json={})
    for job_id in (str(uuid.uuid4()), "nope"):
        assert client.post(f"/api/jobs/{job_id}/rerun", json={}).status_code == 404
