"""The Celery app: all of the worker's and beat's configuration in one place."""

from __future__ import annotations

from celery import Celery

from settings import get_settings

settings = get_settings()

app = Celery("jobstream", broker=settings.redis_url, include=["tasks.jobs"])
app.conf.update(
    # A job survives the death of its worker: the message is acknowledged only when the task
    # ends, and a pool process that dies hands its task back at once. Tasks are idempotent
    # (see tasks.runner.run_job), so a redelivery resumes instead of repeating steps.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_track_started=False,
    worker_send_task_events=True,
    task_send_sent_event=True,
    worker_concurrency=settings.worker_concurrency,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule={
        "recover-stalled-jobs": {"task": "tasks.jobs.recover_stalled_jobs", "schedule": 5.0},
        "purge-expired-jobs": {
            "task": "tasks.jobs.purge_expired_jobs",
            "schedule": min(3600.0, max(settings.retention_s / 4, 60.0)),
        },
    },
)
