"""The process's connections to Redis, Kafka and the history store, made on first use in each process.

librdkafka's threads do not survive fork, so nothing is created at import time: a Celery pool
process or a web worker builds its own on first use.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import cache, cached_property

import redis
from celery import Celery

from settings import Settings, get_settings
from tasks import progress
from tasks.history.store import HistoryStore, StoreError
from tasks.joblog import JobLogAdmin, JobLogReader, JobLogWriter
from tasks.jobtypes import JobType, load_catalog
from tasks.tokens import TokenStore, tokens_path


@dataclass
class Clients:
    settings: Settings

    @property
    def catalog(self) -> dict[str, JobType]:
        """Every job type, by name (loaded once per process)."""
        return load_catalog(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return progress.connect(self.settings)

    @cached_property
    def celery(self) -> Celery:
        """Sends tasks by name to the broker in these settings (the worker's app, with everything
        that runs them, is tasks.worker.celery_app)."""
        app = Celery("jobstream", broker=self.settings.redis_url, set_as_current=False)
        app.conf.update(task_send_sent_event=True, broker_connection_retry_on_startup=True)
        return app

    @cached_property
    def admin(self) -> JobLogAdmin:
        return JobLogAdmin(self.settings)

    @cached_property
    def writer(self) -> JobLogWriter:
        return JobLogWriter(self.settings)

    def reset_writer(self) -> None:
        """Drop the producer after a broker failure; the next job gets a fresh one (a restarted
        broker may not know the old producer's id, which an idempotent producer cannot survive)."""
        writer = self.__dict__.pop("writer", None)
        if writer is not None:
            writer.discard()
        self.admin.forget()

    @cached_property
    def reader(self) -> JobLogReader:
        return JobLogReader(self.settings, starts=self.log_start)

    def log_start(self, job_id: str) -> int:
        """Shared log layout: where the job's records begin in its partition, as Redis or the history
        store knows it; 0 (the partition's beginning: a long read) when neither does."""
        with contextlib.suppress(redis.RedisError):
            if (start := progress.log_start(self.redis, job_id)) is not None:
                return start
        with contextlib.suppress(StoreError):
            if (start := self.history.first_offset(job_id)) is not None:
                return start
        return 0

    @cached_property
    def history(self) -> HistoryStore:
        """The job history store (filled by the history consumer; see tasks.history)."""
        return HistoryStore(self.settings.history_database_url)

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(tokens_path(self.settings))


@cache
def _clients_of(pid: int) -> Clients:
    return Clients(get_settings())


def clients() -> Clients:
    """This process's clients (a forked child gets its own)."""
    return _clients_of(os.getpid())
