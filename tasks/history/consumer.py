"""The long-running consumer that reads every job log into the history store, and the rebuild.

A Kafka consumer group (HISTORY_CONSUMER_GROUP): any number of consumers share the logs' partitions. Each
batch is written in one transaction and its offsets are committed only after that, synchronously;
a consumer that dies between the two reads the batch again, and the store keeps each record once
(its key is its place in Kafka). So every record lands in the store exactly once, whatever dies when.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from settings import Settings
from tasks.history.store import HistoryStore, StoredRecord, stored_record
from tasks.joblog import JobLogAdmin, topic_name

log = logging.getLogger(__name__)

# Most records written in one transaction.
BATCH_MAX = 5_000
# How long one poll waits for a full batch before it takes what came: the store's lag while records
# come in slower than a batch at a time; also how soon a stop is noticed.
POLL_S = 0.1
# How often a consumer reports its lag to the store, and forgets jobs past retention.
REPORT_EVERY_S = 1.0
RETENTION_EVERY_S = 60.0


def subscription(settings: Settings) -> list[str]:
    """What the group subscribes to: the shared layout's topic, or every job's own topic (a regular
    expression, so the topic of a job that starts later is found at the next metadata refresh)."""
    if settings.shared_log:
        return [settings.job_log_topic]
    return ["^" + settings.kafka_topic_prefix.replace(".", "\\.") + "[0-9a-f-]+$"]


def consumer_config(settings: Settings, group: str | None) -> dict[str, object]:
    """The history group's consumer; with no `group`, a rebuild's (assigned by hand, stops at the end)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group or "jobstream-history-rebuild",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": group is None,
        # A new job's topic joins the subscription within a second.
        "topic.metadata.refresh.interval.ms": 1000,
        # A consumer that died hands its partitions on after this long.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "max.poll.interval.ms": 60_000,
        "allow.auto.create.topics": False,
    }


def records_of(messages: Iterable[Message]) -> tuple[list[StoredRecord], dict[tuple[str, int], int]]:
    """The job records among `messages`, and per partition the offset after the last one read."""
    records: list[StoredRecord] = []
    ends: dict[tuple[str, int], int] = {}
    for msg in messages:
        error = msg.error()
        if error is not None:
            # No job has a topic yet: nothing to read, nothing wrong.
            if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                log.warning("reading the job logs: %s", error.str())
            continue
        topic, partition, offset, value = msg.topic(), msg.partition(), msg.offset(), msg.value()
        assert topic is not None
        assert partition is not None
        assert offset is not None
        ends[(topic, partition)] = offset + 1
        if value is not None and (record := stored_record(topic, partition, offset, value)) is not None:
            records.append(record)
    return records, ends


class HistoryConsumer:
    """One member of the history group: read, write, commit, until `stop` is set."""

    def __init__(self, settings: Settings, store: HistoryStore, member: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.member = member or f"{socket.gethostname()}:{os.getpid()}"
        self.stored = 0
        self.last_ts = 0.0  # the newest record's time among those stored
        self._consumer = Consumer(consumer_config(settings, settings.history_consumer_group))

    def run(self, stop: threading.Event) -> None:
        self._consumer.subscribe(subscription(self.settings))
        next_report = next_retention = 0.0
        try:
            while not stop.is_set():
                self.poll_once()
                now = time.monotonic()
                if now >= next_report:
                    self.report()
                    next_report = now + REPORT_EVERY_S
                if now >= next_retention:
                    self.forget_expired()
                    next_retention = now + RETENTION_EVERY_S
        finally:
            self._consumer.close()
            self.store.forget_member(self.member)

    def poll_once(self) -> int:
        """Read a batch, store it, then commit its offsets. Returns how many records were new."""
        messages = self._consumer.consume(BATCH_MAX, POLL_S)
        records, ends = records_of(messages)
        if not ends:
            return 0
        added = self.store.write(records)
        self._consumer.commit(
            offsets=[TopicPartition(topic, partition, end) for (topic, partition), end in ends.items()],
            asynchronous=False,
        )
        self.stored += added
        self.last_ts = max([self.last_ts, *(record.ts for record in records)])
        return added

    def records_behind(self) -> int:
        """Records in this member's partitions not yet stored (from the watermarks last fetched)."""
        assignment = self._consumer.assignment()
        if not assignment:
            return 0
        behind = 0
        for position in self._consumer.position(assignment):
            low, high = self._consumer.get_watermark_offsets(position, cached=True)
            if high >= 0:
                behind += max(0, high - (position.offset if position.offset >= 0 else max(low, 0)))
        return behind

    def report(self) -> None:
        behind = self.records_behind()
        seconds = max(0.0, time.time() - self.last_ts) if behind and self.last_ts else 0.0
        self.store.report_lag(self.member, behind, seconds, self.stored)

    def forget_expired(self) -> None:
        """Drop jobs that ended longer than the retention ago, as their topics are (0: kept for ever)."""
        if self.settings.retention_s:
            self.store.delete_jobs(self.store.finished_before(time.time() - self.settings.retention_s))


def log_partitions(settings: Settings) -> list[tuple[str, int]]:
    """Every partition that holds job records: each job's topic, or the shared topic's partitions."""
    if settings.shared_log:
        return [(settings.job_log_topic, partition) for partition in range(settings.job_log_partitions)]
    return [(topic_name(settings, job_id), 0) for job_id in JobLogAdmin(settings).job_ids()]


def rebuild(settings: Settings, store: HistoryStore) -> int:
    """Empty the store and read every job log into it from the beginning: the store from Kafka
    alone. A history consumer running meanwhile does no harm (records are kept once). Returns how
    many records were stored."""
    store.clear()
    consumer = Consumer(consumer_config(settings, None))
    try:
        partitions = [
            TopicPartition(topic, partition, OFFSET_BEGINNING) for topic, partition in log_partitions(settings)
        ]
        waiting = {
            (tp.topic, tp.partition)
            for tp in partitions
            if (marks := consumer.get_watermark_offsets(tp, timeout=settings.broker_wait_s or 10))[1] > marks[0]
        }
        consumer.assign(partitions)
        stored = 0
        idle_since = time.monotonic()
        while waiting:
            messages = consumer.consume(BATCH_MAX, POLL_S)
            records, _ = records_of(messages)
            stored += store.write(records)
            for msg in messages:
                error = msg.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    waiting.discard((str(msg.topic()), int(msg.partition() or 0)))
            if messages:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > max(settings.broker_wait_s, 1.0):
                raise TimeoutError(f"{len(waiting)} job logs did not reach their end while rebuilding")
        return stored
    finally:
        consumer.close()
