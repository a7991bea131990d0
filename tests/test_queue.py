"""A queued job's place in line and estimated start: the estimate alone, then against a real queue
(a worker with one process), where places move as jobs ahead start or are cancelled."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import cast

import pytest

from rxapp.jobview import ordinal, queue_text
from stack.processes import Child
from tasks import queue, service
from tasks.clients import Clients, clients
from tasks.model import JobState, JobStatus, QueueFull
from tests.apiclient import api_client
from tests.conftest import wait_finished, wait_for
from tests.test_fuzz import job_keys

NOW = 1_000_000.0


def running(step: int, total: int, elapsed_s: float) -> JobState:
    return JobState("j", step, total, JobStatus.RUNNING, NOW, started_at=NOW - elapsed_s)


def test_each_job_ahead_takes_a_running_jobs_mean_time_on_the_first_worker_free() -> None:
    # Halfway after 10 s (10 s left) and after 20 s (20 s left): 30 s a job on average.
    pool = [running(50, 100, 10), running(10, 20, 20)]
    assert queue.start_estimates(pool, [1, 2, 3, 4, 5], NOW) == {1: 10, 2: 20, 3: 40, 4: 50, 5: 70}
    # A running job that has not said its total frees its worker after the known ones' mean.
    unknown = JobState("k", 5, 0, JobStatus.RUNNING, NOW, started_at=NOW - 5)
    assert queue.start_estimates([running(50, 100, 10), unknown], [1, 2, 3], NOW) == {1: 10, 2: 10, 3: 30}
    # Time since the last report counts: that job has 4 s left, not 10.
    assert queue.start_estimates(pool[:1], [1], NOW + 6) == {1: 4}


def test_no_estimate_without_a_running_job_that_has_a_known_eta() -> None:
    assert queue.start_estimates([], [1, 2], NOW) == {1: None, 2: None}
    silent = JobState("s", 0, 0, JobStatus.RUNNING, NOW, started_at=NOW - 30)
    assert queue.start_estimates([silent], [1], NOW) == {1: None}


def test_far_places_are_estimated_at_the_rate_of_the_pool() -> None:
    pool = [running(50, 100, 10), running(50, 100, 10)]  # 20 s a job, 10 s left each
    far = queue.SIMULATED_MAX + 1000
    near, beyond = queue.start_estimates(pool, [queue.SIMULATED_MAX, far], NOW).values()
    assert near is not None
    assert beyond == pytest.approx(near + 1000 * 20 / 2)


@pytest.mark.parametrize(
    ("n", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"),
                    (21, "21st"), (102, "102nd"), (111, "111th"), (1002, "1,002nd")],
)  # fmt: skip
def test_ordinals(n: int, text: str) -> None:
    assert ordinal(n) == text


def test_a_card_says_its_place_and_when_it_starts() -> None:
    queued = JobState("q", 0, 10, JobStatus.QUEUED, NOW)
    assert queue_text(queued) == ""
    assert queue_text(JobState("q", 0, 10, JobStatus.QUEUED, NOW, queue_position=1)) == "next in line"
    assert (
        queue_text(JobState("q", 0, 10, JobStatus.QUEUED, NOW, queue_position=3, starts_in=42.4))
        == "3rd in line · starts in about 42.4 s"
    )


def test_places_in_a_real_queue_move_as_jobs_ahead_start_or_are_cancelled(
    c: Clients, start_worker: Callable[..., Child]
) -> None:
    start_worker("w", concurrency=1)
    client = api_client()

    answered: dict[str, dict] = {}

    def submit(seconds: float) -> str:
        answer = client.post("/api/jobs", json={"type": "slow_restart", "params": {"seconds": seconds}})
        assert answer.status_code == 202, answer.text
        answered[answer.json()["job_id"]] = answer.json()
        return answer.json()["job_id"]

    def job(job_id: str) -> dict:
        answer = client.get(f"/api/jobs/{job_id}")
        assert answer.status_code == 200
        return answer.json()

    first = submit(4)
    wait_for(lambda: job(first)["status"] == "running" and job(first)["step"] >= 1, what="the first job's first step")
    second, third, fourth = submit(3), submit(60), submit(60)
    places = [job(job_id)["queue_position"] for job_id in (second, third, fourth)]
    assert places[0] >= 1
    assert places == [places[0], places[0] + 1, places[0] + 2]
    assert [answered[job_id]["queue_position"] for job_id in (second, third, fourth)] == places, "the submit says it"
    assert answered[second]["starts_in"] is not None
    assert job(first)["queue_position"] is None, "a running job has no place in line"
    # The first job reports its rate: each place has an estimate, later places later ones.
    starts = [job(job_id)["starts_in"] for job_id in (second, third, fourth)]
    assert None not in starts
    assert 0 < starts[0] < starts[1] < starts[2]

    assert service.cancel_job(third, c).status is JobStatus.CANCELLED
    assert job(third)["queue_position"] is None
    assert job(fourth)["queue_position"] == places[0] + 1, "one ahead was cancelled"
    # The first job ends, the second starts: the fourth is next.
    wait_for(lambda: job(second)["status"] == "running", timeout_s=60, what="the second job to start")
    assert job(second)["queue_position"] is None
    assert job(fourth)["queue_position"] == 1
    for job_id in (second, fourth):
        service.cancel_job(job_id, c)
    for job_id in (first, second, fourth):
        wait_finished(c, job_id)
    assert not c.redis.zscore(queue.QUEUE_KEY, fourth), "out of line once cancelled"


def test_a_job_that_ended_without_starting_leaves_the_line(c: Clients) -> None:
    """Its task lost with the broker, say: its snapshot says it ended, or is gone."""
    queued = service.submit_job("count", {"n": 5}, c)
    ended = service.submit_job("count", {"n": 5}, c)
    c.redis.delete(f"{service.progress.SNAPSHOT_PREFIX}{ended.job_id}")
    assert set(queue.forget_stale(c.redis, time.time() + queue.STALE_S + 1)) >= {ended.job_id}
    assert c.redis.zscore(queue.QUEUE_KEY, queued.job_id) is not None
    assert c.redis.zscore(queue.QUEUE_KEY, ended.job_id) is None
    service.cancel_job(queued.job_id, c)
    assert c.redis.zscore(queue.QUEUE_KEY, queued.job_id) is None


def test_a_submit_beyond_max_queued_jobs_is_refused_with_retry_after_and_creates_nothing(
    c: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker runs here: what is submitted stays in line (with what earlier tests left there)."""
    waiting = cast(int, c.redis.zcard(queue.QUEUE_KEY))
    limited = dataclasses.replace(c.settings, max_queued_jobs=waiting + 2)
    monkeypatch.setattr(clients(), "settings", limited)  # the API's settings, as MAX_QUEUED_JOBS would set them
    client = api_client()
    admitted = [client.post("/api/jobs", json={"n": 5}) for _ in range(2)]
    assert [answer.status_code for answer in admitted] == [202, 202]
    keys, tasks = job_keys(c), c.redis.llen("celery")
    refused = client.post("/api/jobs", json={"n": 5})
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"].startswith(f"Jobstream is busy: {waiting + 2:,} jobs are waiting")
    assert (job_keys(c), c.redis.llen("celery"), c.redis.zcard(queue.QUEUE_KEY)) == (keys, tasks, waiting + 2)
    with pytest.raises(QueueFull):  # without an owner, whose job's snapshot is written as it joins the line
        service.submit_job("count", {"n": 5}, dataclasses.replace(c, settings=limited))
    assert (job_keys(c), c.redis.llen("celery"), c.redis.zcard(queue.QUEUE_KEY)) == (keys, tasks, waiting + 2)
    # A place frees up: the next submit goes through.
    client.post(f"/api/jobs/{admitted[0].json()['job_id']}/cancel", json={})
    again = client.post("/api/jobs", json={"n": 5})
    assert again.status_code == 202
    for answer in (admitted[1], again):
        client.post(f"/api/jobs/{answer.json()['job_id']}/cancel", json={})
