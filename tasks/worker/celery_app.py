"""The Celery app: all of the worker's and beat's configuration in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from celery import Celery
from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.worker import state as worker_state

from settings import Settings, get_settings
from tasks.clients import clients
from tasks.jobtypes import load_catalog
from tasks.ops import workers


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
# Every job type now, while Celery still has the working directory on the import path: a module
# named in JOB_MODULES that cannot be imported stops the worker at start, with the reason.
load_catalog(get_settings())

# The periodic checks run every few seconds and rarely find anything; they log what they do find
# (tasks.service). Celery's own lines about them (beat sent it, the worker received it, it
# succeeded) would fill the console, so they are left out; a failure is still logged.
QUIET_TASKS = frozenset({"tasks.jobs.recover_stalled_jobs", "tasks.jobs.purge_expired_jobs"})
# Logger -> the message (format string) Celery logs there for every task it sends, receives or ends.
ROUTINE_LINES = {
    "celery.beat": "Scheduler: Sending due task %s (%s)",  # args: the entry's name, the task's
    "celery.worker.strategy": LOG_RECEIVED,  # args: a dict of the task's id, name, args...
    "celery.app.trace": LOG_SUCCESS,  # args: a dict of the task's id, name, runtime, return value...
}


class QuietPeriodicTasks(logging.Filter):
    """Drops Celery's routine lines about QUIET_TASKS."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != ROUTINE_LINES.get(record.name):
            return True
        args = record.args
        task = args.get("name") if isinstance(args, Mapping) else args[-1] if args else None
        return task not in QUIET_TASKS


for _logger in ROUTINE_LINES:
    logging.getLogger(_logger).addFilter(QuietPeriodicTasks())


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Make this pool process's Kafka producer now: an idempotent producer needs about a second
    to get its producer id, which the process's first job would otherwise wait for."""
    clients().writer  # noqa: B018 - building it is the point


def running_jobs() -> list[str]:
    """The jobs this worker's pool runs now (its accepted requests; the periodic checks left out)."""
    return sorted(request.id for request in tuple(worker_state.active_requests) if request.name == "tasks.jobs.run_job")


@worker_ready.connect
def _start_heartbeat(sender: object, **_: object) -> None:
    """The worker's heartbeat for the operator's console (tasks.ops.workers), from its main process."""
    controller = getattr(sender, "controller", None)
    concurrency = int(getattr(controller, "concurrency", 0) or get_settings().worker_concurrency)
    workers.start_heartbeat(get_settings(), str(getattr(sender, "hostname", "")), concurrency, running_jobs)


@worker_shutdown.connect
def _stop_heartbeat(**_: object) -> None:
    workers.stop_heartbeat()
