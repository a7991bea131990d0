"""Job types on a real worker: progress from inside the function (ctx.steps, ctx.progress, a plain
tqdm loop), results and errors, cancel, and what a killed worker does to each kind of job."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import cast

import pytest

from settings import Settings
from stack.processes import Child
from tasks import progress, service
from tasks.clients import Clients
from tasks.model import JobState, JobStatus
from tests.apiclient import api_client
from tests.conftest import wait_finished, wait_for
from tests.test_pipeline import Subscriber, read_log, state_records, step_records


def run_records(records: list[dict]) -> list[dict]:
    """The first record of each run of a job: they hold its params."""
    return [r for r in state_records(records) if r["status"] == "running" and r.get("params") is not None]


def test_a_tqdm_only_job_defined_in_a_test_module_runs_through_the_api_with_live_progress(
    c: Clients, settings: Settings, worker: Child
) -> None:
    """tests/catalog.py is loaded only through JOB_MODULES; its tqdm_only never calls ctx."""
    client = api_client()
    answer = client.post("/api/jobs", json={"type": "tqdm_only", "params": {"items": 80, "pause_ms": 10}})
    assert answer.status_code == 202
    job_id = answer.json()["job_id"]
    subscriber = Subscriber(settings, job_id)
    final = wait_finished(c, job_id)
    subscriber.join(10)
    assert (final.status, final.step, final.total, final.result) == (JobStatus.SUCCEEDED, 80, 80, sum(range(80)))
    live = [s for _, s in subscriber.messages if s.status is JobStatus.RUNNING and 0 < s.step < 80]
    assert live, "progress arrived while the bar ran"
    assert {(s.total, s.message) for s in live} == {(80, "Crunching")}
    assert [s.step for s in live] == sorted(s.step for s in live)
    # The bar's progress is in the log too, coalesced like any progress.
    records = read_log(settings, job_id)
    assert records[0]["params"] == {"items": 80, "pause_ms": 10.0}
    progress_records = [r for r in records[1:-1] if r["status"] == "running"]
    assert progress_records
    assert len(progress_records) <= len(live) + 2
    assert client.get(f"/api/jobs/{job_id}").json()["result"] == sum(range(80))


def test_built_in_and_test_types_end_with_their_results_or_errors(
    c: Clients, settings: Settings, worker: Child
) -> None:
    client = api_client()

    def submit(job_type: str, params: dict) -> JobState:
        answer = client.post("/api/jobs", json={"type": job_type, "params": params})
        assert answer.status_code == 202, answer.text
        return JobState.from_json(json.dumps(answer.json()))

    primes = submit("primes", {"limit": 100_000, "segments": 10})
    stats = submit("text_stats", {"text": "The cat and the hat.\nA cat!"})
    broken = submit("progress_then_fail", {"fail_at": 3})

    done = wait_finished(c, primes.job_id)
    assert (done.status, done.step, done.total) == (JobStatus.SUCCEEDED, 10, 10)
    assert done.result == {"limit": 100_000, "primes": 9592}
    checkpoints = [r["checkpoint"]["found"] for r in step_records(read_log(settings, primes.job_id))]
    assert len(checkpoints) == 10
    assert checkpoints == sorted(checkpoints)
    assert checkpoints[-1] == 9592

    text = wait_finished(c, stats.job_id)
    assert text.status is JobStatus.SUCCEEDED
    assert text.result["words"] == 7
    assert text.result["lines"] == 2
    assert text.result["top_words"][:2] == [{"word": "the", "count": 2}, {"word": "cat", "count": 2}]
    assert text.params == {"text": "The cat and the hat.\nA cat!", "top": 5, "case": "ignore", "pause_ms": 0.0}

    failed = wait_finished(c, broken.job_id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "ValueError: item 3 is broken")
    assert failed.message == "working on item 3"
    assert read_log(settings, broken.job_id)[-1]["error"] == "ValueError: item 3 is broken"


def test_a_job_that_reports_nothing_shows_running_its_elapsed_time_and_keeps_its_lease(
    c: Clients, worker: Child
) -> None:
    state = service.submit_job("silent", {"seconds": 3}, c)
    lease = progress.lease_key(state.job_id)
    first = wait_for(
        lambda: (s := service.get_job(state.job_id, c)).status is JobStatus.RUNNING and s, what="it to run"
    )

    def lease_ms() -> int:
        return cast(int, c.redis.pttl(lease))

    ttl = wait_for(lambda: lease_ms() > 0 and lease_ms(), what="its lease")
    sampled_at = time.monotonic()
    # The runner's heartbeat publishes the state with a fresh time, and renews the lease, though
    # the function says nothing.
    later = wait_for(lambda: (s := service.get_job(state.job_id, c)).ts - first.ts >= 1.5 and s, what="a heartbeat")
    assert later.status is JobStatus.RUNNING
    assert later.started_at is not None
    assert later.ts - later.started_at >= 1.5
    assert (later.step, later.total) == (0, 0)
    # Not renewed, the lease would have run down by the time since it was sampled.
    ran_down = ttl - (time.monotonic() - sampled_at) * 1000
    assert lease_ms() > ran_down + 200, "the heartbeat renewed the lease"
    final = wait_finished(c, state.job_id)
    assert (final.status, final.result) == (JobStatus.SUCCEEDED, "done")


def test_cancel_stops_a_tqdm_only_job_at_its_next_iteration(c: Clients, settings: Settings, worker: Child) -> None:
    state = service.submit_job("tqdm_only", {"items": 100_000, "pause_ms": 2}, c)
    running = wait_for(lambda: (s := service.get_job(state.job_id, c)).step > 20 and s, what="the bar to move")
    service.cancel_job(state.job_id, c)
    final = wait_finished(c, state.job_id)
    assert final.status is JobStatus.CANCELLED
    # The snapshot read before the cancel lags by up to one interval, and the cancel is seen at the
    # first publish after it: about two intervals' worth of 2 ms items, with room for a busy machine.
    allowed = 2 * settings.progress_interval_ms / 2 + 50
    assert final.step - running.step <= allowed, f"{final.step - running.step} items after the cancel"
    assert read_log(settings, state.job_id)[-1]["status"] == "cancelled"


def test_cancel_stops_a_job_that_reports_nothing_even_in_a_sleep(c: Clients, settings: Settings, worker: Child) -> None:
    state = service.submit_job("silent", {"seconds": 60}, c)
    wait_for(lambda: service.get_job(state.job_id, c).status is JobStatus.RUNNING, what="it to run")
    service.cancel_job(state.job_id, c)
    # Its heartbeat learns of the cancel within about a second and interrupts the sleep.
    final = wait_finished(c, state.job_id, timeout_s=20)
    assert (final.status, final.result) == (JobStatus.CANCELLED, None)
    assert read_log(settings, state.job_id)[-1]["status"] == "cancelled"
    # The pool process goes on to its next job as before.
    assert wait_finished(c, service.submit_job("silent", {"seconds": 0.2}, c).job_id).result == "done"


@pytest.mark.parametrize(
    ("job_type", "params", "started_at_least"),
    [
        # Resumes after its last logged segment, with its count so far from the checkpoint.
        ("primes", {"limit": 100_000_000, "segments": 5000}, 300),
        # Not resumable: run again from its beginning.
        ("slow_restart", {"seconds": 3}, 1),
        # Not resumable: fails.
        ("slow_fail", {"seconds": 60}, 1),
    ],
)
def test_a_killed_worker_resumes_restarts_or_fails_the_job_as_its_type_declares(
    c: Clients,
    settings: Settings,
    start_worker: Callable[..., Child],
    job_type: str,
    params: dict,
    started_at_least: int,
) -> None:
    w = start_worker("pool", concurrency=1)
    state = service.submit_job(job_type, params, c)
    wait_for(lambda: service.get_job(state.job_id, c).step >= started_at_least, what="the job to get going")
    (child,) = w.children()
    os.kill(child, signal.SIGKILL)  # task_reject_on_worker_lost: the parent requeues the task
    final = wait_finished(c, state.job_id, timeout_s=120)
    records = read_log(settings, state.job_id)
    runs = run_records(records)
    if job_type == "primes":
        assert final.status is JobStatus.SUCCEEDED
        assert final.result == {"limit": 100_000_000, "primes": 5_761_455}
        assert [r["step"] for r in step_records(records)] == list(range(1, 5001)), "each segment once"
        assert len(runs) == 2
        assert runs[1]["message"] == f"resumed after step {runs[1]['step']}: its worker was lost"
        assert runs[1]["step"] >= started_at_least
    elif job_type == "slow_restart":
        assert final.status is JobStatus.SUCCEEDED
        assert [r["message"] for r in runs[1:]] == ["started again from the beginning: its worker was lost"]
        assert runs[1]["step"] == 0
    else:
        assert final.status is JobStatus.FAILED
        assert final.error == "its worker was lost, and a slow_fail job is not run again"
        assert len(runs) == 1
        assert records[-1]["error"] == final.error
    assert records[-1]["params"] == state.params


def test_work_queued_before_job_types_runs_as_count_jobs(c: Clients, settings: Settings, worker: Child) -> None:
    """An upgrade keeps what the old version queued: a task of (job_id, n), and a running job
    recorded with its total only, which the stalled-job check requeues."""
    job_id = str(uuid.uuid4())
    progress.store(c.redis, settings, JobState(job_id, 0, 40, JobStatus.QUEUED, time.time()))
    c.celery.send_task("tasks.jobs.run_job", args=(job_id, 40), task_id=job_id)
    final = wait_finished(c, job_id)
    assert (final.status, final.job_type, final.params, final.step) == (JobStatus.SUCCEEDED, "count", {"n": 40}, 40)
    stalled = str(uuid.uuid4())
    progress.store(c.redis, settings, JobState(stalled, 5, 30, JobStatus.RUNNING, time.time()))
    c.redis.hset(progress.RUNNING_KEY, stalled, "30")
    assert service.recover_stalled_jobs(c) == [stalled]
    assert wait_finished(c, stalled).params == {"n": 30}
