"""Celery tasks: thin wrappers that hand their arguments to plain functions."""

from __future__ import annotations

from typing import Any

from tasks import service
from tasks.clients import clients
from tasks.model import DEFAULT_JOB_TYPE
from tasks.worker import runner
from tasks.worker.celery_app import app


@app.task(name="tasks.jobs.run_job")
def run_job(job_id: str, job_type: str | int, params: dict[str, Any] | None = None, owner: str | None = None) -> str:
    """Run job `job_id`, a `job_type` job with these params, of this owner; returns its final status.

    A message queued before job types holds (job_id, n): a count job of n steps."""
    if isinstance(job_type, int):
        job_type, params = DEFAULT_JOB_TYPE, {"n": job_type}
    return runner.run_job(job_id, job_type, params or {}, clients(), owner).status.value


@app.task(name="tasks.jobs.purge_expired_jobs")
def purge_expired_jobs() -> int:
    """Delete the logs and snapshots of jobs finished longer ago than the retention."""
    return len(service.purge_expired_jobs(clients()))


@app.task(name="tasks.jobs.recover_stalled_jobs")
def recover_stalled_jobs() -> int:
    """Requeue started jobs whose worker died (their lease lapsed)."""
    return len(service.recover_stalled_jobs(clients()))
