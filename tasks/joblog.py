"""Each job's Kafka log: where it is (a topic per job, or one shared topic), a batching writer, and a
pooled reader (last record, pages).

Only the Kafka protocol is used (through confluent-kafka), so it runs on Apache Kafka and on any
broker that speaks it.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from settings import Settings
from tasks.model import JobNotFound, JobState, LineKind, Record, check_job_id, is_job_id, parse_record, record_kind


class JobLogError(RuntimeError):
    """The job's log could not be written or read: the broker is unreachable or refused it."""


@dataclass(frozen=True)
class LogPage:
    """Consecutive records of a job's log, and where the next page starts."""

    records: list[Record]
    next_offset: int
    end: bool  # the log had no more records when read (a running job's log grows)


def topic_name(settings: Settings, job_id: str) -> str:
    """The job's own topic; built only from a checked id."""
    return settings.kafka_topic_prefix + check_job_id(job_id)


@dataclass(frozen=True, slots=True)
class LogPlace:
    """Where a job's records are: a partition of a topic, the job's own (topic layout) or shared
    with other jobs' records (shared layout: they are told apart by their key, the job id)."""

    topic: str
    partition: int
    shared: bool


def job_partition(job_id: str, partitions: int) -> int:
    """The shared topic's partition of a job: every record of a job in one partition keeps them in
    order. Chosen here (CRC-32 of the id), not by a client's partitioner, so every reader agrees."""
    return zlib.crc32(job_id.encode()) % partitions


def log_place(settings: Settings, job_id: str) -> LogPlace:
    if settings.shared_log:
        return LogPlace(settings.job_log_topic, job_partition(check_job_id(job_id), settings.job_log_partitions), True)
    return LogPlace(topic_name(settings, job_id), 0, False)


def job_id_of(settings: Settings, topic: str) -> str | None:
    """The job id a topic belongs to, or None for a topic that is not a job log."""
    prefix = settings.kafka_topic_prefix
    job_id = topic[len(prefix) :] if topic.startswith(prefix) else None
    return job_id if is_job_id(job_id) else None


class JobLogAdmin:
    """Creates, lists and deletes job topics (the shared layout's one topic is made once, and kept by
    Kafka's time retention)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout_s = max(settings.broker_wait_s, 1.0)
        self._admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        self._shared_checked = False

    def create(self, job_id: str) -> bool:
        """Make sure the job's log has its topic: the job's own, with one partition (ordering), or the
        shared one (made and its partitions checked by the first job of the process, and again after
        `forget`). An existing topic is fine. True when the job's own topic was made just now: its log
        is empty (never in the shared layout, whose topic other jobs share)."""
        if not self.settings.shared_log:
            return self._create(NewTopic(topic_name(self.settings, job_id), 1, self.settings.kafka_replication_factor))
        if not self._shared_checked:
            self._create_shared()
        return False

    def forget(self) -> None:
        """After a broker failure: the next job makes the shared topic again if the broker lost it, and
        checks its partitions (a job that finds it missing fails its first try; see tasks.worker.runner)."""
        self._shared_checked = False

    def _create_shared(self) -> None:
        retention_ms = self.settings.retention_s * 1000 or -1
        shared = NewTopic(
            self.settings.job_log_topic,
            self.settings.job_log_partitions,
            self.settings.kafka_replication_factor,
            config={"retention.ms": str(retention_ms)},
        )
        self._create(shared)
        self._check_partitions(shared.topic, shared.num_partitions)
        self._shared_checked = True

    def _check_partitions(self, topic: str, count: int) -> None:
        """Wait until the broker's metadata shows every partition of the topic with a leader (a producer
        that asks about a topic made just now may see fewer, and fail its records); a topic made
        elsewhere with another number of partitions is an error that says so."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                found = self._admin.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
            except KafkaException as exc:
                raise JobLogError(f"cannot read the job log topic's metadata: {exc.args[0].str()}") from exc
            partitions = {} if found is None or found.error is not None else found.partitions
            if partitions and len(partitions) != count:
                raise JobLogError(
                    f"the job log topic {topic} has {len(partitions)} partitions in Kafka, and JOB_LOG_PARTITIONS"
                    f" says {count}: every reader and writer must agree (delete the topic, or set the setting)"
                )
            if partitions and all(partition.leader >= 0 for partition in partitions.values()):
                return
            if time.monotonic() > deadline:
                raise JobLogError(f"the Kafka broker did not show the {count} partitions of {topic} in time")
            time.sleep(0.05)

    def _create(self, topic: NewTopic) -> bool:
        """Create the topic; False when it exists already."""
        future = self._admin.create_topics([topic], request_timeout=self.timeout_s)[topic.topic]
        try:
            future.result(timeout=self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise JobLogError(f"cannot create the job's log topic in Kafka: {exc.args[0].str()}") from exc
            return False
        except TimeoutError as exc:
            raise JobLogError("the Kafka broker did not answer in time") from exc
        return True

    def job_ids(self) -> list[str]:
        """Ids of every job that has a topic of its own (none in the shared layout)."""
        try:
            metadata = self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise JobLogError(f"cannot list topics: {exc.args[0].str()}") from exc
        return [job_id for t in metadata.topics if (job_id := job_id_of(self.settings, t))]

    def delete(self, job_ids: Iterable[str]) -> None:
        """Delete the jobs' topics; in the shared layout Kafka's retention removes their records."""
        if self.settings.shared_log:
            return
        topics = [topic_name(self.settings, job_id) for job_id in job_ids]
        if not topics:
            return
        for topic, future in self._admin.delete_topics(topics, request_timeout=self.timeout_s).items():
            try:
                future.result(timeout=self.timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise JobLogError(f"cannot delete {topic}: {exc.args[0].str()}") from exc


# The header that marks a fence record (see JobLogWriter.fence).
FENCE_HEADER = "jobstream-fence"


# A producer keeps every topic it has written to, and its work per record grows with them (librdkafka's
# broker thread goes through all of their partitions; a broker may keep an idempotent producer's state
# per partition). In the topic layout a process's producer is replaced after this many job topics, which
# also bounds its memory. The next one is made NEXT_PRODUCER_AHEAD topics early: an idempotent producer
# takes about half a second to get its producer id.
TOPICS_PER_PRODUCER = 256
NEXT_PRODUCER_AHEAD = 128


class JobLogWriter:
    """Appends records to job topics through one idempotent, batching producer per process at a time.

    Records are queued and sent in batches; `flush` is the only place that waits, so a job that
    reports success after it has all its records acknowledged by the broker. A process runs one job
    at a time through it (`begin` starts a run, and counts its topic).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Delivery errors since the run began; the producers' callbacks hold this list, not the writer.
        self._errors: list[str] = []
        self._producer = self._new_producer()
        self._next: Producer | None = None
        self._topics: set[str] = set()

    def _new_producer(self) -> Producer:
        errors = self._errors

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(err.str())

        def on_error(err: KafkaError) -> None:
            # A fatal error (a restarted broker that fences this producer's id, say) makes the
            # producer useless: fail now rather than when each queued record times out.
            if err.fatal():
                errors.append(err.str())

        return Producer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                # A topic that is not there is an error, never made by the broker with its own defaults
                # (a shared topic with the broker's default number of partitions would misplace jobs).
                "allow.auto.create.topics": False,
                "linger.ms": 5,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                # An unreachable broker fails the record after this long instead of hanging the job.
                "message.timeout.ms": int(max(self.settings.broker_wait_s, 1) * 1000),
                "delivery.report.only.error": True,
                "on_delivery": on_delivery,
                "error_cb": on_error,
            }
        )

    def begin(self, place: LogPlace) -> None:
        """A job's run begins, its records to go to `place`: forget delivery errors of an earlier run,
        and move on to a new producer once this one has written to TOPICS_PER_PRODUCER topics."""
        written = len(self._topics)
        if self._next is None and written >= TOPICS_PER_PRODUCER - NEXT_PRODUCER_AHEAD:
            self._next = self._new_producer()
        if self._next is not None and written >= TOPICS_PER_PRODUCER:
            old, self._producer, self._next = self._producer, self._next, None
            self._topics.clear()
            # Normally nothing is left: a run waits for its records, unless it was stopped before its end.
            old.flush(max(self.settings.broker_wait_s, 1.0))
        self._topics.add(place.topic)
        self._errors.clear()

    def append(self, place: LogPlace, job_id: str, value: str) -> None:
        """Queue one record; when the local queue is full, wait for the broker to drain it."""
        while True:
            try:
                self._producer.produce(place.topic, value, job_id, place.partition)
                return
            except BufferError:
                self._producer.poll(0.05)
                self.raise_on_error()

    def fence(self, place: LogPlace, job_id: str) -> bytes:
        """Append a fence (a record with no value, marked with a new token) and wait until it is
        written; returns the token. Every record an earlier run wrote comes before it, so a read
        that stops at the fence has all of them without trusting the broker's high watermark.
        Readers skip records without a value."""
        token = secrets.token_bytes(16)
        self._producer.produce(place.topic, None, job_id, place.partition, headers=[(FENCE_HEADER, token)])
        self.flush()
        return token

    def poll(self) -> None:
        """Serve delivery reports; call it now and then from the producing loop."""
        self._producer.poll(0)

    def raise_on_error(self) -> None:
        if self._errors:
            error = self._errors[0]
            self._errors.clear()
            raise JobLogError(f"the job's log could not be written: {error}")

    def discard(self) -> None:
        """Drop every record not yet sent, so none lands after a retry has resumed the job."""
        self._producer.purge(in_queue=True, in_flight=True)
        self._producer.flush(0)

    def flush(self) -> None:
        """Wait until every queued record is acknowledged; raise if any could not be written."""
        remaining = self._producer.flush(max(self.settings.broker_wait_s, 1.0))
        self.raise_on_error()
        if remaining:
            raise JobLogError(f"{remaining} records were not acknowledged by the Kafka broker in time")


# Answers to an offset lookup that mean "ask again shortly": the partition's leader is being chosen.
LEADER_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
    }
)
LEADER_WAIT_S = 0.05
# A pooled consumer is closed this long after it was made; a topic is deleted only well after.
CONSUMER_MAX_AGE_S = 30.0
# How long a read waits for the first record of a partition whose watermarks say it is empty.
EMPTY_WAIT_S = 0.3
# How long the broker may hold a read's fetch: short, so a read gets to the end of a partition at once
# (at the end, a fetch waits this long for new records) and an offset lookup never waits behind a fetch.
FETCH_WAIT_MS = 1
# A broker may answer such short fetches with nothing, neither records nor "end of partition", for as
# long as reading its storage takes more than their wait (Tansu does once a partition holds about 2,000
# batches; at 80,000 it takes about 80 ms). A read that gets no answer for STALL_S (plus its fetches'
# wait) goes on from where it is with a consumer of its own whose fetches may wait longer, in turn
# PATIENT_FETCH_WAITS_MS. The reader remembers the partition (up to PATIENT_PLACES_MAX of them), and
# its next read there starts with that patience. Tansu holds each such fetch for its whole wait, so the
# shortest wait that works is sought: a read of 3,000 batches' partition takes about 35 ms at 10 ms a
# fetch, against 125 ms at 100 ms.
STALL_S = 0.25
PATIENT_FETCH_WAITS_MS = (10, 30, 100, 300, 1_000)
PATIENT_PLACES_MAX = 1_024
# How long `last` follows a log that is still being written before it answers with what it has.
CHASE_S = 0.25
# How far back from the end `last` looks for the last state, in turn, past the lines a job wrote
# after it (at most LOG_MAX_LINES of them, and a few states in between).
LAST_STATE_WINDOWS = (1, 256, 16_384)
# A page stops once it holds this many bytes of records (a page of long lines could hold megabytes).
PAGE_MAX_BYTES = 1_000_000
# How long a read waits for one of the pool's consumers before the broker counts as unavailable.
POOL_WAIT_S = 5.0
# Most records one filtered page reads through (a page of lines in a log of a million steps
# comes in several pages, some of them empty, rather than as one long read).
SCAN_MAX = 100_000


def _raise_unless_end(error: KafkaError) -> None:
    """A consumed message's error is "end of partition" or a failed read."""
    if error.code() != KafkaError._PARTITION_EOF:
        raise JobLogError(f"cannot read the job's log: {error.str()}")


def _stall_s(level: int) -> float:
    """How long a read waits for an answer before it turns more patient (level -1: the pool's consumer)."""
    return STALL_S + (PATIENT_FETCH_WAITS_MS[level] if level >= 0 else FETCH_WAIT_MS) / 1000


class JobLogReader:
    """Reads job topics with a small pool of long-lived consumers: no group, no consumer per call.

    The last record is found by reading from just before the high watermark until the end of the
    partition. This stays right on brokers whose high watermark lags behind after batched produce.

    Each consumer is retired after CONSUMER_MAX_AGE_S, even when idle: a consumer that once read
    a topic must not outlive that topic's deletion by much (some brokers, Tansu among them, send
    metadata for a deleted topic that crashes librdkafka). Deletion waits longer than that.
    """

    def __init__(
        self,
        settings: Settings,
        pool_size: int = 4,
        pool_wait_s: float = POOL_WAIT_S,
        starts: Callable[[str], int] | None = None,
    ) -> None:
        self.settings = settings
        self.pool_wait_s = pool_wait_s
        # Shared layout: where a job's records begin (at or before its first), or 0 for "not known";
        # a read of its log starts there rather than at the partition's beginning.
        self.starts = starts
        self.timeout_s = max(min(settings.broker_wait_s, 10.0), 1.0)
        self._pool_size = pool_size
        self._idle: list[tuple[float, Consumer]] = []
        self._count = 0
        self._ready = threading.Condition()
        self._reaper: threading.Thread | None = None
        # (topic, partition) -> the index in PATIENT_FETCH_WAITS_MS its last slow read needed
        self._patience: dict[tuple[str, int], int] = {}

    def _new_consumer(self, fetch_wait_ms: int = FETCH_WAIT_MS) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                # Required by the client; never joined: partitions are assigned by hand.
                "group.id": "jobstream-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                # A start the broker calls out of range (before its retention's start, or past an end
                # it reports late) is read from the beginning: a jump to the end would miss records.
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": fetch_wait_ms,
                "allow.auto.create.topics": False,
            }
        )

    @contextmanager
    def _consumer(self) -> Iterator[Consumer]:
        with self._ready:
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_forever, name="joblog-reaper", daemon=True)
                self._reaper.start()
            ready = self._ready.wait_for(lambda: self._idle or self._count < self._pool_size, self.pool_wait_s)
            if not ready:
                raise JobLogError(f"every reader of the job logs is busy ({self._pool_size} of them)")
            if self._idle:
                born, consumer = self._idle.pop()
            else:
                self._count += 1
                born, consumer = time.monotonic(), None
        if consumer is None:
            try:
                consumer = self._new_consumer()
            except BaseException:
                self._retire([], uncreated=1)
                raise
        try:
            yield consumer
        finally:
            consumer.unassign()
            with self._ready:
                self._idle.append((born, consumer))
                self._ready.notify()

    def _reap_forever(self) -> None:
        while True:
            time.sleep(CONSUMER_MAX_AGE_S / 4)
            self.reap()

    def reap(self, max_age_s: float = 0.0) -> None:
        """Close idle consumers older than `max_age_s` (default CONSUMER_MAX_AGE_S)."""
        cutoff = time.monotonic() - (max_age_s or CONSUMER_MAX_AGE_S)
        with self._ready:
            old = [consumer for born, consumer in self._idle if born < cutoff]
            self._idle = [(born, consumer) for born, consumer in self._idle if born >= cutoff]
        self._retire(old)

    def _retire(self, consumers: list[Consumer], uncreated: int = 0) -> None:
        for consumer in consumers:
            consumer.close()
        with self._ready:
            self._count -= len(consumers) + uncreated
            self._ready.notify_all()

    def _watermarks(self, consumer: Consumer, place: LogPlace) -> tuple[int, int]:
        """The partition's low and high watermarks. Asked again while its leader is moving: Apache Kafka
        answers NOT_LEADER for a moment after it made a topic or came back, though its metadata already
        names the leader (librdkafka retries produce requests on it, not this offset lookup)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return consumer.get_watermark_offsets(
                    TopicPartition(place.topic, place.partition), timeout=self.timeout_s
                )
            except KafkaException as exc:
                code = exc.args[0].code()
                if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION):
                    raise JobNotFound("no such job") from exc
                if code not in LEADER_MOVING or time.monotonic() > deadline:
                    raise JobLogError(f"cannot read the job's log: {exc.args[0].str()}") from exc
            time.sleep(LEADER_WAIT_S)

    def _begin(self, job_id: str, place: LogPlace, low: int) -> int:
        """The first offset that may hold a record of the job."""
        return max(low, self.starts(job_id)) if place.shared and self.starts is not None else low

    def _values(
        self,
        consumer: Consumer,
        place: LogPlace,
        key: bytes,
        watermarks: tuple[int, int],
        start: int,
        chase_s: float | None = None,
        fence: bytes | None = None,
    ) -> Iterator[tuple[int, bytes | None]]:
        """Offsets and raw values of the records from `start` to the end of the partition, or to the
        fence with this token; another job's record (shared partition) or a record without a value
        comes as its offset and None.

        While a job runs, the end moves on as fast as it is read; with `chase_s`, reading stops
        after that long and the caller takes the newest record seen so far.
        """
        level = self._patience.get((place.topic, place.partition), -1)
        patient = None if level < 0 else self._new_consumer(PATIENT_FETCH_WAITS_MS[level])
        consumer = patient or consumer  # the pooled one, or this read's own: the partition needs patience
        consumer.assign([TopicPartition(place.topic, place.partition, start)])
        stall_s = _stall_s(level)
        began = time.monotonic()
        # An empty partition may never report its end; watermarks that say "empty" and no
        # record within EMPTY_WAIT_S mean it is. (Reading on from the reported end of a partition that
        # is not empty waits for its end to be reported: some brokers report a high watermark behind
        # the records they hold, and taking "nothing" for an answer there could start a job again.)
        nothing = fence is None and watermarks[1] <= watermarks[0]
        deadline = began + (EMPTY_WAIT_S if nothing else self.timeout_s)
        seen, answered_at, position = False, began, start
        try:
            while True:
                # consume() waits for its full timeout unless the batch fills: keep the timeout short.
                batch = consumer.consume(10_000, 0.005)
                now = time.monotonic()
                if batch:
                    answered_at = now
                elif not nothing and now - answered_at > stall_s and level + 1 < len(PATIENT_FETCH_WAITS_MS):
                    level += 1
                    patient = consumer = self._more_patient(consumer, patient, place, position, level)
                    stall_s, answered_at = _stall_s(level), now
                    continue
                if not batch and now > deadline:
                    if not seen and nothing:
                        return
                    raise JobLogError(
                        f"the Kafka broker sent nothing from offset {position} of {place.topic}[{place.partition}]"
                        f" in {self.timeout_s:g} s (watermarks {watermarks[0]}..{watermarks[1]}, seen {seen})"
                    )
                for msg in batch:
                    error = msg.error()
                    if error is not None:
                        _raise_unless_end(error)
                        if fence is None:
                            return
                        continue
                    value, offset = msg.value(), msg.offset()
                    assert offset is not None
                    seen, position = True, offset + 1
                    if value is None and fence is not None and (FENCE_HEADER, fence) in (msg.headers() or ()):
                        return
                    yield offset, (value if not place.shared or msg.key() == key else None)
                deadline = now + self.timeout_s if batch else deadline
                if seen and chase_s is not None and time.monotonic() - began > chase_s:
                    return
        finally:
            if patient is not None:
                patient.close()

    def _more_patient(
        self, current: Consumer, patient: Consumer | None, place: LogPlace, position: int, level: int
    ) -> Consumer:
        """The read's own consumer, whose fetches may wait PATIENT_FETCH_WAITS_MS[level], at `position`;
        the one it replaces stops reading (closed when it was the read's own). The partition is
        remembered: its next read starts with this patience."""
        current.unassign()
        if patient is not None:
            patient.close()
        consumer = self._new_consumer(PATIENT_FETCH_WAITS_MS[level])
        consumer.assign([TopicPartition(place.topic, place.partition, position)])
        if len(self._patience) >= PATIENT_PLACES_MAX:
            self._patience.clear()
        self._patience[(place.topic, place.partition)] = level
        return consumer

    def last(self, job_id: str, fence: Callable[[], bytes] | None = None) -> JobState | None:
        """The job's last state record; None when its log has none; JobNotFound when it has no log.

        Looked for from just before the end, then further back (see LAST_STATE_WINDOWS), past the
        lines the job wrote after it (and, in a shared partition, other jobs' records). With `fence`
        (it writes one and returns its token, see JobLogWriter.fence), called once the partition's end
        is asked for, the read ends at that record, which comes after every record of the job: no
        wait for a high watermark that some brokers report late."""
        place, key = log_place(self.settings, job_id), job_id.encode()
        with self._consumer() as consumer:
            low, high = self._watermarks(consumer, place)
            token = None if fence is None else fence()  # after `high`, which then cannot be past it
            begin = self._begin(job_id, place, low)
            for window in (*LAST_STATE_WINDOWS, sys.maxsize):
                start = max(begin, high - window)
                # Some brokers report a high watermark behind the log's end (or 0) while a
                # producer is writing; reading on to the end of the partition finds the true end.
                last = None
                chase_s = CHASE_S if token is None else None
                for _, value in self._values(consumer, place, key, (low, high), start, chase_s, token):
                    if value is not None and record_kind(value) is LineKind.STATE:
                        last = value
                if last is not None or start == begin:
                    return None if last is None else JobState.from_json(last)
            return None

    def end_offset(self, job_id: str) -> int:
        """The offset the job's partition's next record will have, or an earlier one (a lower bound
        on where a job that starts now begins)."""
        with self._consumer() as consumer:
            return self._watermarks(consumer, log_place(self.settings, job_id))[1]

    def records(self, job_id: str, kinds: frozenset[LineKind] | None = None) -> list[Record]:
        """Every record of the job's log (of these `kinds`, when given), oldest first."""
        records: list[Record] = []
        offset, end = 0, False
        while not end:
            page = self.page(job_id, offset, sys.maxsize, kinds)
            records += page.records
            offset, end = page.next_offset, page.end
        return records

    def page(self, job_id: str, offset: int, limit: int, kinds: frozenset[LineKind] | None = None) -> LogPage:
        """At most `limit` records (and about PAGE_MAX_BYTES) from `offset` (0 is the job's first
        record) on; with `kinds`, or in a shared partition, reading through at most SCAN_MAX records."""
        place, key = log_place(self.settings, job_id), job_id.encode()
        with self._consumer() as consumer:
            low, high = self._watermarks(consumer, place)
            records: list[Record] = []
            next_offset = max(self._begin(job_id, place, low), offset)
            size = 0
            values = self._values(consumer, place, key, (low, high), next_offset)
            capped = kinds is not None or place.shared
            for scanned, (record_offset, value) in enumerate(values):
                full = len(records) == limit or (records and value is not None and size + len(value) > PAGE_MAX_BYTES)
                if full or (capped and scanned == SCAN_MAX):
                    return LogPage(records, next_offset, end=False)
                if value is not None and (kinds is None or record_kind(value) in kinds):
                    records.append(parse_record(value))
                    size += len(value)
                next_offset = record_offset + 1
            return LogPage(records, next_offset, end=True)

    def close(self) -> None:
        """Close every idle consumer now."""
        with self._ready:
            idle, self._idle = self._idle, []
        self._retire([consumer for _, consumer in idle])
