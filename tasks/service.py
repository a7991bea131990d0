"""What the web page and the HTTP API do with jobs: submit, read, cancel, purge.

Synchronous on purpose: the Celery side calls these directly, async callers use a thread.
"""

from __future__ import annotations

import time
import uuid

from tasks import progress
from tasks.celery_app import app as celery_app
from tasks.clients import Clients
from tasks.model import JobNotFound, JobState, JobStatus, check_job_id, parse_n


def submit_job(n: object, c: Clients) -> JobState:
    """Check `n`, record the job as queued and enqueue it; returns at once with the new id."""
    total = parse_n(n, c.settings.max_n)
    state = JobState(str(uuid.uuid4()), 0, total, JobStatus.QUEUED, time.time())
    progress.store(c.redis, c.settings, state)
    celery_app.send_task("tasks.jobs.run_job", args=(state.job_id, total), task_id=state.job_id)
    return state


def get_job(job_id: object, c: Clients) -> JobState:
    """The job's latest state: the Redis snapshot, else the last record of its Kafka log."""
    job_id = check_job_id(job_id)
    state = progress.load(c.redis, job_id)
    if state is not None:
        return state
    state = c.reader.last(job_id)
    if state is None:
        raise JobNotFound("no such job")
    progress.refill(c.redis, c.settings, state)
    return state


def cancel_job(job_id: object, c: Clients) -> JobState:
    """Ask the job to stop. A queued job is cancelled at once; a running one stops at its next
    progress publish (within PROGRESS_INTERVAL_MS) and writes a final `cancelled` record."""
    state = get_job(job_id, c)
    if state.status.finished:
        return state
    c.redis.set(progress.cancel_key(state.job_id), 1, ex=c.settings.retention_s or None)
    if state.status is JobStatus.QUEUED:
        lease = progress.Lease(c.redis, state.job_id)
        # Holding the lease means no worker runs the job now; when one picks it up, it sees the
        # flag, writes the `cancelled` record to the log and runs no step.
        if lease.acquire():
            try:
                state = JobState(state.job_id, 0, state.total, JobStatus.CANCELLED, time.time())
                progress.store(c.redis, c.settings, state)
            finally:
                lease.release()
    return state


def recover_stalled_jobs(c: Clients) -> list[str]:
    """Hand back to the queue the started, unfinished jobs whose runner died with its worker.

    A runner renews its job's lease while it runs; a lapsed lease means no one runs the job. The
    task it gets back resumes after the last step in the job's log (see tasks.runner.run_job).
    """
    recovered = []
    for raw_id, raw_total in c.redis.hgetall(progress.RUNNING_KEY).items():
        job_id, total = raw_id.decode(), int(raw_total)
        if c.redis.exists(progress.lease_key(job_id)):
            continue
        state = progress.load(c.redis, job_id)
        if state is not None and state.status.finished:
            c.redis.hdel(progress.RUNNING_KEY, job_id)
        elif c.redis.set(progress.requeued_key(job_id), 1, nx=True, ex=progress.LEASE_MS // 1000 * 3):
            celery_app.send_task("tasks.jobs.run_job", args=(job_id, total), task_id=job_id)
            recovered.append(job_id)
    return recovered


def purge_expired_jobs(c: Clients, now: float | None = None) -> list[str]:
    """Delete topics and snapshots of jobs that finished more than the retention ago."""
    cutoff = (time.time() if now is None else now) - c.settings.retention_s
    expired = []
    for job_id in c.admin.job_ids():
        try:
            last = c.reader.last(job_id)
        except JobNotFound:
            continue
        if last is not None and last.status.finished and last.ts < cutoff:
            expired.append(job_id)
    c.admin.delete(expired)
    keys = [key(job_id) for job_id in expired for key in (progress.snapshot_key, progress.cancel_key)]
    if keys:
        c.redis.delete(*keys)
    return expired
