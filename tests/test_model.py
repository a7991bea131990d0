"""Pure logic: id checks, the record format, settings validation, the card's text, the
worker's log lines."""

import json
import logging
import uuid
from types import SimpleNamespace

import pytest
from celery.app import trace
from celery.beat import Scheduler
from reflex_base.constants.config import Expiration
from reflex_base.environment import environment, oplock_hold_time

from rxapp.jobview import format_seconds, job_view
from settings import SETTINGS, SettingsError, apply_reflex_environment, load_settings, reflex_environment
from tasks.model import JobNotFound, JobState, JobStatus, check_job_id, is_job_id
from tasks.worker.celery_app import QUIET_TASKS

MAX_N = 10_000_000


def test_job_ids_are_lower_case_uuid4_only() -> None:
    job_id = str(uuid.uuid4())
    assert is_job_id(job_id)
    assert check_job_id(job_id) == job_id
    for bad in [job_id.upper(), str(uuid.uuid1()), job_id + "x", job_id[:-1], "", None, 42, "../etc", "a" * 36,
                f" {job_id}", job_id.replace("-", "")]:  # fmt: skip
        assert not is_job_id(bad)
        with pytest.raises(JobNotFound):
            check_job_id(bad)


def test_state_round_trips_through_json_and_leaves_out_empty_fields() -> None:
    state = JobState(str(uuid.uuid4()), 3, 10, JobStatus.FAILED, 12.5, 10.0, error="boom")
    assert JobState.from_json(state.to_json()) == state
    running = JobState(state.job_id, 1, 10, JobStatus.RUNNING, 1.0)
    assert set(json.loads(running.to_json())) == {"job_id", "type", "step", "total", "status", "ts"}
    typed = JobState(
        state.job_id, 2, 0, JobStatus.SUCCEEDED, 2.0, 1.0, None, "primes", {"limit": 9}, "m", [1], {"k": 1}
    )
    assert JobState.from_json(typed.to_json()) == typed
    # Records written before job types were count jobs.
    old = json.dumps({"job_id": state.job_id, "step": 1, "total": 5, "status": "running", "ts": 1.0})
    assert JobState.from_json(old).job_type == "count"


def test_settings_defaults_are_valid_and_documented() -> None:
    settings = load_settings({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.max_n == MAX_N
    assert settings.api_url == "http://localhost:8000"
    assert all(spec.meaning for spec in SETTINGS.values())


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_N", "many", "MAX_N must be a whole number"),
        ("BACKEND_PORT", "70000", "BACKEND_PORT must be between 1 and 65535"),
        ("REDIS_URL", "http://x", "REDIS_URL must look like redis://"),
        ("KAFKA_BOOTSTRAP_SERVERS", "nohost", "KAFKA_BOOTSTRAP_SERVERS must be host:port"),
        ("KAFKA_TOPIC_PREFIX", "job/", "KAFKA_TOPIC_PREFIX may hold only"),
        ("PROGRESS_INTERVAL_MS", "0", "PROGRESS_INTERVAL_MS must be between"),
    ],
)
def test_bad_settings_name_the_setting(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({name: value})


def test_reflex_state_in_redis_gets_the_opportunistic_lock_unless_the_user_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Always npm (bun's installer cannot always be fetched) and no version check; no lock in memory.
    assert reflex_environment(load_settings({})) == {"REFLEX_USE_NPM": "1", "REFLEX_CHECK_LATEST_VERSION": "0"}
    in_redis = load_settings({"REFLEX_REDIS_URL": "redis://127.0.0.1:6379/1"})
    for name in reflex_environment(in_redis):  # unset here, and as before once the test ends
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    apply_reflex_environment(in_redis)
    assert environment.REFLEX_USE_NPM.get() is True
    # As Reflex reads them: on, and held for less than the time after which Reflex warns.
    assert environment.REFLEX_OPLOCK_ENABLED.get() is True
    assert 0 < oplock_hold_time().total_seconds() * 1000 < Expiration.LOCK_WARNING_THRESHOLD

    monkeypatch.setenv("REFLEX_OPLOCK_ENABLED", "false")
    apply_reflex_environment(in_redis)
    assert environment.REFLEX_OPLOCK_ENABLED.get() is False


def test_card_shows_rate_and_eta_while_running_and_duration_when_done() -> None:
    job_id = str(uuid.uuid4())
    running = job_view(JobState(job_id, 250, 1000, JobStatus.RUNNING, ts=110.0, started_at=100.0))
    assert (running.step_text, running.percent_text, running.rate_text) == ("250/1,000", "25%", "25.0 steps/s")
    assert running.eta_text == "ETA 30.0 s"
    assert running.cancellable
    done = job_view(JobState(job_id, 1000, 1000, JobStatus.SUCCEEDED, ts=140.0, started_at=100.0))
    assert done.duration_text == "took 40.0 s"
    assert not done.cancellable
    assert format_seconds(0.25) == "250 ms"
    assert format_seconds(3725) == "1 h 02 min"


def test_a_card_never_moves_backwards_or_out_of_a_final_state() -> None:
    job_id = str(uuid.uuid4())
    at_500 = job_view(JobState(job_id, 500, 1000, JobStatus.RUNNING, 1.0))
    assert not JobState(job_id, 400, 1000, JobStatus.RUNNING, 2.0).supersedes(at_500.status, at_500.step)
    assert JobState(job_id, 600, 1000, JobStatus.RUNNING, 2.0).supersedes(at_500.status, at_500.step)
    assert JobState(job_id, 500, 1000, JobStatus.CANCELLED, 2.0).supersedes(at_500.status, at_500.step)
    final = job_view(JobState(job_id, 1000, 1000, JobStatus.SUCCEEDED, 3.0))
    assert not JobState(job_id, 1000, 1000, JobStatus.RUNNING, 4.0).supersedes(final.status, final.step)
    assert not JobState(job_id, 1000, 1000, JobStatus.FAILED, 4.0).supersedes(final.status, final.step)
    # A queued state read before the job started (a place in line, late) never moves it back to queued.
    started = JobState(job_id, 0, 1000, JobStatus.RUNNING, 5.0)
    assert not JobState(job_id, 0, 1000, JobStatus.QUEUED, 6.0, queue_position=1).supersedes(started.status, 0)
    assert JobState(job_id, 0, 1000, JobStatus.QUEUED, 6.0, queue_position=1).supersedes(JobStatus.QUEUED, 0)
    assert started.supersedes(JobStatus.QUEUED, 0)


def celery_lines(task: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What Celery logs about one run of `task`, by the calls celery.beat, celery.worker.strategy and
    celery.app.trace make: beat sends it, the worker receives it, it succeeds; and a failure."""
    context = {"id": "1", "name": task, "args": "()", "kwargs": "{}", "eta": None}
    failure = context | {"description": "raised unexpected", "exc": "RuntimeError()"}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        Scheduler.apply_entry(SimpleNamespace(apply_async=lambda *a, **kw: None), SimpleNamespace(name="e", task=task))
        logging.getLogger("celery.worker.strategy").info(trace.LOG_RECEIVED, context, extra={"data": context})
        trace.info(trace.LOG_SUCCESS, context | {"return_value": "0", "runtime": 0.01})
        logging.getLogger("celery.app.trace").error(trace.LOG_FAILURE, failure, extra={"data": failure})
    return caplog.messages


def test_the_worker_logs_every_line_about_jobs_and_only_failures_of_the_periodic_checks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = "tasks.jobs.run_job"
    assert celery_lines(job, caplog) == [
        f"Scheduler: Sending due task e ({job})",
        f"Task {job}[1] received",
        f"Task {job}[1] succeeded in 0.01s: 0",
        f"Task {job}[1] raised unexpected: RuntimeError()",
    ]
    checks = ["tasks.jobs.purge_expired_jobs", "tasks.jobs.recover_stalled_jobs"]
    assert sorted(QUIET_TASKS) == checks
    for task in checks:
        assert celery_lines(task, caplog) == [f"Task {task}[1] raised unexpected: RuntimeError()"]
