"""The services a bench or load run works against: Redis and the Kafka broker, reused or embedded.

Services are planned and started with `stack.services`, as the tests do, on the run's own settings
(`settings.ENVIRONMENTS["bench"]` or `["load"]`); whatever the run started, it stops. Workers and
apps are `stack.processes` children, their output in RUN_DIR/logs.
"""

from __future__ import annotations

import argparse
import gc
import os
import uuid
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import psutil
import redis

from settings import Settings
from stack import services
from tasks.clients import Clients


class BenchError(RuntimeError):
    """The bench could not measure something, or a measurement failed its own check."""


def check_redis_db(settings: Settings) -> None:
    """Refuse database 0, the app's default: the bench empties the database it uses."""
    db = urlsplit(settings.redis_url).path.lstrip("/") or "0"
    if db == "0":
        raise BenchError(f"REDIS_URL={settings.redis_url} is the app's database; the bench empties its database")


def add_broker_option(parser: argparse.ArgumentParser) -> None:
    """`--broker tansu|apache`: the embedded broker a run starts (before its settings are read)."""
    parser.add_argument(
        "--broker",
        choices=("tansu", "apache"),
        help="the embedded Kafka broker to start when none answers (default: EMBEDDED_KAFKA, else tansu)",
    )


def use_broker_option(args: argparse.Namespace) -> None:
    if args.broker:
        os.environ["EMBEDDED_KAFKA"] = args.broker


class BenchStack:
    """Redis and Kafka for one bench run, the bench's Redis database emptied, and its clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        check_redis_db(self.settings)
        self.planned: list[services.Service] = []
        self.running: list[services.Running] = []
        self.clients = Clients(self.settings)
        self.job_ids: list[str] = []

    def __enter__(self) -> BenchStack:
        services.wipe_embedded_kafka(self.settings)  # an embedded Apache Kafka starts empty, as Tansu does
        self.planned = services.plan(self.settings)
        try:
            for service in self.planned:
                if service.embedded:
                    self.running.append(services.start(service, self.settings))
        except BaseException:
            self.stop()
            raise
        self.flush_redis()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def redis(self) -> redis.Redis:
        return self.clients.redis

    @property
    def log_dir(self) -> Path:
        """Where the workers and apps the bench starts write their output."""
        return self.settings.run_dir / "logs"

    def describe(self) -> dict[str, str]:
        """Which services were reused and which embedded (and what they are), for the results."""
        return {
            s.name: f"embedded {s.what} {s.host}:{s.port}" if s.embedded else f"reused {s.host}:{s.port}"
            for s in self.planned
        }

    @property
    def broker(self) -> str:
        """Which Kafka broker the run measures: the embedded one's kind, or "reused" (whatever answered)."""
        kafka = next(s for s in self.planned if s.name == "kafka")
        return self.settings.embedded_kafka if kafka.embedded else "reused"

    def flush_redis(self) -> None:
        """Empty the bench's database: no queued Celery tasks or snapshots of an earlier run."""
        self.redis.flushdb()

    def new_job_id(self, create_topic: bool = False) -> str:
        """A fresh job id, remembered so that its topic is cleaned up."""
        job_id = str(uuid.uuid4())
        self.job_ids.append(job_id)
        if create_topic:
            self.clients.admin.create(job_id)
        return job_id

    def _embedded_broker(self) -> services.Running | None:
        return next((r for r in self.running if r.service.name == "kafka"), None)

    def broker_process(self) -> psutil.Process | None:
        """The embedded broker's process, whose CPU is the broker's cost; None for a reused broker."""
        broker = self._embedded_broker()
        return None if broker is None else psutil.Process(broker.pid)

    def fresh_broker(self) -> bool:
        """Start the embedded broker again, empty (Tansu holds everything in memory; Apache Kafka's log is
        wiped), so that the next figures are not those of a broker filled by earlier phases, as the
        bench's Redis is emptied before each; True when it did. A reused broker is left as it is (the
        bench deletes only its own topics there, at its end)."""
        broker = self._embedded_broker()
        if broker is None:
            return False
        self._close_kafka_clients()
        broker.stop()
        services.wipe_embedded_kafka(self.settings)
        planned = services.plan_kafka(self.settings)  # an Apache Kafka's storage is formatted again
        self.running[self.running.index(broker)] = services.start(planned, self.settings)
        self.job_ids.clear()  # their topics went with the broker
        return True

    def _close_kafka_clients(self) -> None:
        """Close the bench's own Kafka clients; made again when next used."""
        cached = self.clients.__dict__
        # The reader's consumers go first: on Tansu a consumer that has read a topic crashes (SIGSEGV in
        # librdkafka) once that topic is deleted.
        if "reader" in cached:
            cached.pop("reader").close()
        cached.pop("writer", None)
        cached.pop("admin", None)
        # Freed now: a client held in a reference cycle would live until the collector's next pass.
        gc.collect()

    def stop(self) -> None:
        """Close the clients, delete the bench's topics from a reused broker, stop what was started."""
        try:
            self._close_kafka_clients()  # the consumers before the topics they read
            if self.job_ids and self._embedded_broker() is None:
                self.clients.admin.delete(self.job_ids)
            self.job_ids.clear()
        finally:
            # The Kafka clients go before the broker, so they do not log its disappearance.
            self._close_kafka_clients()
            for running in reversed(self.running):
                running.stop()
            self.running.clear()
