"""What a job says back besides its steps: the lines it logs (ctx.log, logging, print), in its
Kafka log beside its states, within LOG_MAX_LINES; the traceback that failed it; and how both are
read back (the API's `kind` filter, the last state past trailing lines)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from settings import Settings
from stack.processes import Child
from tasks import progress
from tasks.clients import Clients
from tasks.joblog import LAST_STATE_WINDOWS, log_place
from tasks.jobtypes import find
from tasks.model import JobState, JobStatus, LineKind, LogLine, parse_record, record_kind
from tasks.worker.context import RunContext
from tasks.worker.output import LineWriter
from tests.apiclient import api_client, script_token
from tests.conftest import BOTH_BROKERS, wait_finished
from tests.test_pipeline import Subscriber, line_records, read_log, state_records

# What tests/catalog.py's chatty says before its numbered lines, in order, and at what level.
CHATTY_FIRST = [
    ("info", "from ctx.log"),
    ("warning", "from ctx.log, a warning"),
    ("info", "from logging"),
    ("info", "from print"),
    ("warning", "from standard error"),
    ("error", "from logging, with a traceback"),
]


def api_log(client: TestClient, job_id: str, **query: Any) -> list[dict]:
    """Every record the API answers with, page after page."""
    records: list[dict] = []
    offset, end = 0, False
    while not end:
        answer = client.get(f"/api/jobs/{job_id}/log", params={**query, "offset": offset, "limit": 1000})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        records += body["records"]
        offset, end = body["next_offset"], body["end"]
    return records


def submit(client: TestClient, job_type: str, **params: Any) -> str:
    answer = client.post("/api/jobs", json={"type": job_type, "params": params})
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def test_lines_from_ctx_log_logging_and_print_are_records_of_the_log_in_order(
    c: Clients, settings: Settings, worker: Child
) -> None:
    client = api_client()
    job_id = submit(client, "chatty", lines=3)
    final = wait_finished(c, job_id)
    assert (final.status, final.result) == (JobStatus.SUCCEEDED, 3)
    assert final.line == "the end, without a line end", "the card's latest line"

    everything = api_log(client, job_id)
    lines = line_records(everything)
    said = [(r["level"], r["message"].partition("\n")[0]) for r in lines]
    numbered = [("info", f"line {i} of 3") for i in (1, 2, 3)]
    assert said == [*CHATTY_FIRST, *numbered, ("info", "the end, without a line end")]
    assert {r["kind"] for r in lines} == {"log"}
    # logger.exception keeps its traceback, in the line; the bar on standard error is not a line.
    assert "KeyError: 'caught'" in lines[5]["message"]
    assert not any("a bar" in r["message"] for r in lines)
    # Beside the states: the first (with the params), then the final one.
    states = state_records(everything)
    assert (states[0]["params"], states[-1]["status"]) == ({"lines": 3, "pause_ms": 0.0}, "succeeded")
    assert everything.index(states[0]) == 0
    assert everything[-1] == states[-1]
    # Another Kafka client reads the same records from the topic, lines with their kind first.
    raw = read_log(settings, job_id)
    assert [r["message"] for r in line_records(raw)] == [r["message"] for r in lines]
    assert [r.get("kind", "state") for r in raw] == [r["kind"] for r in everything]

    # The `kind` filter: lines only, states only, both kinds of line.
    assert api_log(client, job_id, kind="log") == lines
    assert api_log(client, job_id, kind="state") == state_records(everything)
    assert api_log(client, job_id, kind=["log", "error"]) == lines
    assert api_log(client, job_id, kind="error") == []


@pytest.mark.parametrize("bad", ["lines", "", "STATE", "log,error"])
def test_an_unknown_kind_is_refused(c: Clients, bad: str) -> None:
    job_id = str(uuid.uuid4())
    answer = api_client().get(f"/api/jobs/{job_id}/log", params={"kind": bad})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("kind")
    assert "'log'" in answer.json()["error"]


def test_a_job_printing_past_log_max_lines_keeps_the_limit_and_says_how_many_it_dropped(
    c: Clients, settings: Settings, start_worker: Any
) -> None:
    start_worker("w", LOG_MAX_LINES="500")
    client = api_client()
    job_id = str(uuid.uuid4())
    subscriber = Subscriber(settings, job_id)
    started = time.monotonic()
    owner = c.tokens.owner(script_token())  # the API client's, so that it may read the job
    params = {"lines": 20_000, "pause_ms": 0}
    state = JobState(job_id, 0, 0, JobStatus.QUEUED, time.time(), job_type="chatty", params=params, owner=owner)
    progress.store(c.redis, c.settings, state)
    c.celery.send_task("tasks.jobs.run_job", args=(job_id, "chatty", params, owner), task_id=job_id)
    final = wait_finished(c, job_id)
    took = time.monotonic() - started
    subscriber.join(10)
    assert final.status is JobStatus.SUCCEEDED
    lines = api_log(client, job_id, kind="log")
    said = len(CHATTY_FIRST) + 20_000 + 1
    assert len(lines) == 500 + 1
    assert [r["message"] for r in lines[len(CHATTY_FIRST) : 500]] == [
        f"line {i} of 20000" for i in range(1, 500 - len(CHATTY_FIRST) + 1)
    ]
    assert (lines[-1]["level"], lines[-1]["message"]) == (
        "warning",
        f"{said - 500:,} more lines were not kept: a job keeps at most 500 (LOG_MAX_LINES)",
    )
    # The lines that were not kept still reach the card, coalesced: no more messages than intervals.
    assert final.line == "the end, without a line end"
    assert len(subscriber.messages) <= took / settings.progress_interval_s + 3


def test_an_exception_fails_the_job_with_its_traceback_in_the_log_and_one_line_in_its_state(
    c: Clients, worker: Child
) -> None:
    client = api_client()
    job_id = submit(client, "progress_then_fail", fail_at=3)
    final = wait_finished(c, job_id)
    assert (final.status, final.error) == (JobStatus.FAILED, "ValueError: item 3 is broken")
    errors = api_log(client, job_id, kind="error")
    assert len(errors) == 1
    traceback = errors[0]["message"]
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert 'tests/catalog.py", line' in traceback
    assert "in progress_then_fail" in traceback
    assert traceback.rstrip().endswith("ValueError: item 3 is broken")
    assert "tasks/worker/runner.py" not in traceback, "the job's frames, not the runner's"
    assert (errors[0]["level"], errors[0]["step"]) == ("error", 2)
    # The state (what pages and the job's API answer get) has the one line only.
    answer = client.get(f"/api/jobs/{job_id}").json()
    assert answer["error"] == "ValueError: item 3 is broken"
    assert "Traceback" not in str(answer)


@BOTH_BROKERS
def test_the_last_state_is_found_past_the_lines_written_after_it(c: Clients) -> None:
    """A worker that died while its job wrote lines leaves lines after the last state: a resume
    and a read of the job must still find that state."""
    job_id = str(uuid.uuid4())
    c.admin.create(job_id)
    place = log_place(c.settings, job_id)
    c.writer.begin(place)
    state = JobState(job_id, 7, 10, JobStatus.RUNNING, time.time(), checkpoint={"at": 7})
    c.writer.append(place, job_id, state.to_json())
    for i in range(LAST_STATE_WINDOWS[1] + 44):
        c.writer.append(place, job_id, LogLine(job_id, f"line {i}", time.time(), step=7).to_json())
    c.writer.flush()
    assert c.reader.last(job_id) == state
    empty = str(uuid.uuid4())
    c.admin.create(empty)
    c.writer.append(log_place(c.settings, empty), empty, LogLine(empty, "only a line", time.time()).to_json())
    c.writer.flush()
    assert c.reader.last(empty) is None


def test_ctx_log_refuses_an_unknown_level(c: Clients) -> None:
    job_id = str(uuid.uuid4())
    publisher = progress.ProgressPublisher(c.redis, c.settings, job_id)
    ctx = RunContext(job_id, find(c.catalog, "chatty"), c, publisher, time.time())
    with pytest.raises(ValueError, match="unknown log level 'loud': one of debug, info, warning, error, critical"):
        ctx.log("x", level="loud")


class Said:
    """Stands in for a job's context: keeps what a LineWriter writes (the writer's logic alone)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def log(self, message: str, level: str = "info") -> None:
        self.lines.append((level, message))

    write_line = log


@pytest.mark.parametrize(
    ("writes", "lines"),
    [
        (["one\ntwo\n"], ["one", "two"]),
        (["par", "tial", "\n"], ["partial"]),
        (["windows\r\n", "ends\r", "\n"], ["windows", "ends"]),
        (["\r 10%|#", "\r 50%|#####", "\r100%|##########\n"], []),  # a redrawn bar
        (["\r 10%", "\r100%\n", "after the bar\n"], ["after the bar"]),
        (["a\n", "\n", "   \n", "b\n"], ["a", "b"]),  # blank lines say nothing
        (["no end"], ["no end"]),  # written when the job ends
    ],
)
def test_printed_text_becomes_whole_lines(writes: list[str], lines: list[str]) -> None:
    said = Said()
    writer = LineWriter(said, "info")  # type: ignore[arg-type]
    for text in writes:
        assert writer.write(text) == len(text)
    writer.finish()
    assert said.lines == [("info", line) for line in lines]


def test_a_line_without_end_is_written_once_it_is_long() -> None:
    said = Said()
    writer = LineWriter(said, "info")  # type: ignore[arg-type]
    writer.write("x" * 10_000)
    assert [len(line) for _, line in said.lines] == [10_000]
    with pytest.raises(TypeError):
        writer.write(b"bytes")  # type: ignore[arg-type]


def test_line_records_are_told_from_states_by_their_first_bytes() -> None:
    job_id = str(uuid.uuid4())
    for record in (
        LogLine(job_id, 'héllo "quoted" {"kind":"state"}', 1.5, "warning", 3),
        LogLine(job_id, "Traceback ...", 2.5, "error", 4, LineKind.ERROR),
        JobState(job_id, 3, 9, JobStatus.RUNNING, 1.5, message='{"kind":"log"}'),
    ):
        raw = record.to_json().encode()
        assert record_kind(raw) is (record.kind if isinstance(record, LogLine) else LineKind.STATE)
        assert parse_record(raw) == record
