"""The Celery app: all of the worker's and beat's configuration in one place."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from settings import Settings, get_settings
from tasks.clients import clients


def make_app(settings: Settings) -> Celery:
    """A Celery app whose broker is the Redis in `settings`, with all of Jobstream's configuration."""
    app = Celery("jobstream", broker=settings.redis_url, include=["tasks.worker.jobs"])
    app.conf.update(
        # A job survives the death of its worker: the message is acknowledged only when the task
        # ends, and a pool process that dies hands its task back at once. Tasks are idempotent
        # (see tasks.worker.runner.run_job), so a redelivery resumes instead of repeating steps. With late
        # acks and a multiplier of 1 a worker holds only the jobs its pool runs: a job queued behind
        # them stays in the queue when the worker is killed, instead of in its unacknowledged set.
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
    return app


app = make_app(get_settings())


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Make this pool process's Kafka producer now: an idempotent producer needs about a second
    to get its producer id, which the process's first job would otherwise wait for."""
    clients().writer  # noqa: B018 - building it is the point
