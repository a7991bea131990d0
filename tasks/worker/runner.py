"""Running one job: step from where its log ends to N, log every step, publish coalesced progress.

Plain functions, testable without Celery; the Celery task only calls `run_job`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from tasks import progress
from tasks.clients import Clients
from tasks.joblog import JobLogError, topic_name
from tasks.model import JobState, JobStatus, check_job_id

log = logging.getLogger(__name__)

StepWork = Callable[[int], None]


def sleep_step(delay_ms: float) -> StepWork:
    """The demo job's work: each step sleeps `delay_ms` (nothing at all for 0)."""
    if delay_ms <= 0:
        return lambda step: None
    delay_s = delay_ms / 1000
    return lambda step: time.sleep(delay_s)


def run_job(job_id: str, total: int, c: Clients, step_work: StepWork) -> JobState:
    """Run the job to its end, once, even when several copies of the task are delivered.

    A lease in Redis admits one copy at a time; the copy that holds it resumes after the last
    step in the job's log, so a redelivered job never repeats a step.
    """
    check_job_id(job_id)
    lease = progress.Lease(c.redis, job_id)
    if not lease.wait(progress.LEASE_MS / 1000 + 1):
        log.info("job %s is run by another worker; this copy stops", job_id)
        return progress.load(c.redis, job_id) or JobState(job_id, 0, total, JobStatus.QUEUED, time.time())
    c.redis.hset(progress.RUNNING_KEY, job_id, str(total))
    publisher = progress.ProgressPublisher(c.redis, c.settings, job_id, lease)
    try:
        final = _run_with_one_retry(job_id, total, c, step_work, publisher)
    except progress.LeaseLost:
        log.warning("job %s was handed to another worker; this copy stops", job_id)
        return progress.load(c.redis, job_id) or JobState(job_id, 0, total, JobStatus.RUNNING, time.time())
    else:
        c.redis.hdel(progress.RUNNING_KEY, job_id)
        return final
    finally:
        lease.release()


def _run_with_one_retry(
    job_id: str, total: int, c: Clients, step_work: StepWork, publisher: progress.ProgressPublisher
) -> JobState:
    """Run; after a Kafka failure, once more with a new producer (a broker restarted since the
    last job fences the old one), resuming after the last logged step; then fail the job."""
    try:
        try:
            return _run_leased(job_id, total, c, step_work, publisher)
        except JobLogError as exc:
            log.warning("job %s: %s; trying again with a new producer", job_id, exc)
            c.reset_writer()
            return _run_leased(job_id, total, c, step_work, publisher)
    except JobLogError as exc:
        return _fail_without_log(c, publisher, job_id, total, exc)


def _run_leased(
    job_id: str, total: int, c: Clients, step_work: StepWork, publisher: progress.ProgressPublisher
) -> JobState:
    """Step from where the job's log ends; raises JobLogError when Kafka cannot be used."""
    c.admin.create(job_id)
    last = c.reader.last(job_id)
    if last is not None and last.status.finished:
        publisher.publish_final(last)
        return last
    first = last.step + 1 if last is not None else 1
    started_at = last.started_at if last is not None and last.started_at else time.time()
    c.writer.begin()
    final = _steps(job_id, total, first, started_at, c, step_work, publisher)
    c.writer.append(topic_name(c.settings, job_id), job_id, final.to_json())
    c.writer.flush()
    publisher.publish_final(final)
    return final


def _steps(
    job_id: str,
    total: int,
    first: int,
    started_at: float,
    c: Clients,
    step_work: StepWork,
    publisher: progress.ProgressPublisher,
) -> JobState:
    """The hot loop: returns the final state (succeeded, failed or cancelled) once it ends."""
    if c.redis.exists(progress.cancel_key(job_id)):
        # Cancelled before its first step: it never started.
        return JobState(job_id, first - 1, total, JobStatus.CANCELLED, time.time(), started_at if first > 1 else None)
    publisher.publish(JobState(job_id, first - 1, total, JobStatus.RUNNING, time.time(), started_at))
    topic = topic_name(c.settings, job_id)
    # Records are formatted by hand: at 150k+ steps/s, json.dumps per step is a third of the cost.
    head = f'{{"job_id":"{job_id}","total":{total},"status":"running","started_at":{started_at!r},"step":'
    append, writer, now, clock = c.writer.append, c.writer, time.time, time.monotonic
    step = first - 1
    try:
        for step in range(first, total + 1):
            step_work(step)
            ts = now()
            append(topic, job_id, f'{head}{step},"ts":{ts!r}}}')
            if not step & 1023:
                writer.poll()
                writer.raise_on_error()
            if clock() >= publisher.next_due and publisher.publish(
                JobState(job_id, step, total, JobStatus.RUNNING, ts, started_at)
            ):
                return JobState(job_id, step, total, JobStatus.CANCELLED, now(), started_at)
    except (JobLogError, progress.LeaseLost):
        raise
    except Exception as exc:  # the job's own work failed: that is the job's result, not a crash
        log.exception("job %s failed at step %d", job_id, step)
        # The step that raised was not done: the job ends on the last step its log holds.
        error = f"{type(exc).__name__}: {exc}"
        return JobState(job_id, step - 1, total, JobStatus.FAILED, now(), started_at, error=error)
    return JobState(job_id, total, total, JobStatus.SUCCEEDED, now(), started_at)


def _fail_without_log(
    c: Clients, publisher: progress.ProgressPublisher, job_id: str, total: int, exc: JobLogError
) -> JobState:
    """Kafka is unreachable: the job fails with the reason in its state, kept in Redis only."""
    log.error("job %s failed: %s", job_id, exc)
    c.reset_writer()
    try:
        last = progress.load(publisher.client, job_id)
    except redis.RedisError:
        last = None
    step = last.step if last is not None else 0
    started_at = last.started_at if last is not None else None
    final = JobState(job_id, step, total, JobStatus.FAILED, time.time(), started_at, error=str(exc))
    publisher.publish_final(final)
    return final
