"""Reads that a client cannot make expensive: an id unknown to the job index is not found without a
question to Kafka (and the index comes back after Redis lost it), a log page is bounded in records
and bytes, and a read waits a bounded time for a log reader."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from rxapp.api import LOG_PAGE_MAX
from settings import Settings
from tasks import progress, service
from tasks.clients import Clients
from tasks.joblog import PAGE_MAX_BYTES, JobLogError, JobLogReader, log_place
from tasks.model import JobNotFound, JobState, JobStatus, LogLine, ServiceUnavailable
from tasks.worker import runner
from tests.apiclient import api_client
from tests.conftest import BOTH_BROKERS


@pytest.fixture
def without_kafka(settings: Settings) -> Clients:
    """Clients whose Kafka never answers: a read that reaches it fails, one that does not succeeds."""
    return Clients(dataclasses.replace(settings, kafka_bootstrap_servers="127.0.0.1:9", broker_wait_s=1.0))


def finished_job(c: Clients) -> str:
    job_id = str(uuid.uuid4())
    assert runner.run_job(job_id, "count", {"n": 3}, c).status is JobStatus.SUCCEEDED
    return job_id


def test_an_id_unknown_to_the_index_is_not_found_without_asking_kafka(c: Clients, without_kafka: Clients) -> None:
    known = finished_job(c)
    service.rebuild_index(c)  # what beat's check does when the index is not complete
    c.redis.delete(progress.snapshot_key(known))  # so that only its log can answer for it
    unknown = str(uuid.uuid4())
    started = time.monotonic()
    for call in (
        lambda: service.get_job(unknown, without_kafka),
        lambda: service.read_log(unknown, 0, 10, without_kafka),
        lambda: service.cancel_job(unknown, without_kafka),
        lambda: service.rerun_job(unknown, without_kafka),
    ):
        with pytest.raises(JobNotFound):
            call()
    assert time.monotonic() - started < 1.0, "no call waited for the broker"
    # A job the index holds is asked of its log: with Kafka down, that is a 503, not a 404.
    with pytest.raises(ServiceUnavailable):
        service.get_job(known, without_kafka)
    assert service.get_job(known, c).status is JobStatus.SUCCEEDED


def test_the_index_lost_with_redis_is_rebuilt_from_the_topics(c: Clients, without_kafka: Clients) -> None:
    known = finished_job(c)
    c.redis.delete(progress.INDEX_KEY, progress.INDEX_COMPLETE_KEY, progress.snapshot_key(known))
    unknown = str(uuid.uuid4())
    # Not complete: an unknown id is asked of Kafka, as before there was an index.
    with pytest.raises(ServiceUnavailable):
        service.get_job(unknown, without_kafka)
    assert service.get_job(known, c).status is JobStatus.SUCCEEDED
    assert service.rebuild_index(c) >= 1
    assert c.redis.sismember(progress.INDEX_KEY, known)
    assert service.rebuild_index(c) == 0, "a complete index is left alone"
    with pytest.raises(JobNotFound):
        service.get_job(unknown, without_kafka)
    # A job submitted now is in it at once.
    submitted = service.submit_job("count", {"n": 5}, c)
    assert c.redis.sismember(progress.INDEX_KEY, submitted.job_id)
    service.cancel_job(submitted.job_id, c)


def test_a_log_page_holds_at_most_a_thousand_records_and_about_a_megabyte(c: Clients) -> None:
    client = api_client()
    job_id = str(uuid.uuid4())
    answer = client.get(f"/api/jobs/{job_id}/log", params={"limit": LOG_PAGE_MAX + 1})
    assert answer.status_code == 422
    assert "limit" in answer.json()["error"]
    c.admin.create(job_id)
    progress.add_to_index(c.redis, job_id)
    place = log_place(c.settings, job_id)
    line = "x" * 8000
    c.writer.begin(place)
    for _ in range(300):
        c.writer.append(place, job_id, LogLine(job_id, line, time.time()).to_json())
    c.writer.flush()
    page = c.reader.page(job_id, 0, LOG_PAGE_MAX)
    size = sum(len(record.to_json()) for record in page.records)
    assert not page.end
    assert PAGE_MAX_BYTES - 9000 < size <= PAGE_MAX_BYTES
    assert len(c.reader.records(job_id)) == 300, "the next pages hold the rest"


def test_a_read_waits_a_bounded_time_for_a_busy_pool(c: Clients, settings: Settings) -> None:
    reader = JobLogReader(settings, pool_size=1, pool_wait_s=0.3)
    job_id = finished_job(c)
    outcome: list[object] = []
    with reader._consumer():  # the pool's one consumer, held as a slow read would
        thread = threading.Thread(target=lambda: outcome.append(_try(lambda: reader.last(job_id))))
        started = time.monotonic()
        thread.start()
        thread.join(5)
        waited = time.monotonic() - started
    assert isinstance(outcome[0], JobLogError)
    assert "busy" in str(outcome[0])
    assert 0.3 <= waited < 2
    assert reader.last(job_id) is not None, "free again once the read ends"
    reader.close()


def _try(call: Callable[[], object]) -> object:
    try:
        return call()
    except JobLogError as exc:
        return exc


# One record a batch: this many make the embedded broker answer a 1 ms fetch with nothing (about 2,000 did here).
SMALL_BATCHES = 3_000
BATCHED = 5_000


@BOTH_BROKERS
def test_after_a_batched_produce_only_tansus_high_watermark_lags_and_the_last_state_is_found_on_both(
    c: Clients, broker: str
) -> None:
    # The one difference between the brokers that Jobstream's reads meet: after records go in batches,
    # Apache Kafka's high watermark is the offset after the last record; Tansu's is the first offset of
    # the last batch plus one, so a read that seeks high - 1 finds an older record there. The reader
    # reads on to the partition's end instead, and finds the job's last state on both.
    job_id = str(uuid.uuid4())
    c.admin.create(job_id)
    place = log_place(c.settings, job_id)
    producer = Producer({"bootstrap.servers": c.settings.kafka_bootstrap_servers, "linger.ms": 50})
    now = time.time()
    for n in range(BATCHED):
        producer.produce(place.topic, LogLine(job_id, f"line {n}", now).to_json(), job_id, place.partition)
    final = JobState(job_id, 3, 3, JobStatus.SUCCEEDED, now, started_at=now, params={"n": 3})
    producer.produce(place.topic, final.to_json(), job_id, place.partition)
    assert producer.flush(30) == 0

    high = c.reader.end_offset(job_id)
    if broker == "apache":
        assert high == BATCHED + 1
    else:
        assert 0 < high < BATCHED + 1, "Tansu's high watermark is no longer behind: the reader's detour may go"
    assert c.reader.last(job_id) == final
    assert len(c.reader.records(job_id)) == BATCHED + 1


@BOTH_BROKERS
@pytest.mark.parametrize("log_layout", ["topic", "shared"])
def test_a_read_goes_on_where_the_broker_answers_short_fetches_with_nothing(c: Clients, log_layout: str) -> None:
    # A broker may answer a fetch with nothing, neither records nor the partition's end, for as long as
    # reading its storage takes longer than the fetch may wait (the reader's wait 1 ms). The embedded
    # broker does once a partition holds a few thousand batches: CI saw resumed jobs fail on it. The read
    # goes on with fetches that may wait; it finds the job's last state and its first page.
    layout = dataclasses.replace(
        c.settings, job_log_layout=log_layout, job_log_topic=f"batches-{uuid.uuid4().hex[:8]}", job_log_partitions=1
    )
    lc = Clients(layout)
    job_id = str(uuid.uuid4())
    lc.admin.create(job_id)
    place = log_place(layout, job_id)
    producer = Producer({"bootstrap.servers": layout.kafka_bootstrap_servers, "linger.ms": 0, "batch.num.messages": 1})
    now = time.time()
    for n in range(SMALL_BATCHES):
        producer.produce(place.topic, LogLine(job_id, f"line {n}", now).to_json(), job_id, place.partition)
        producer.poll(0)
    final = JobState(job_id, 3, 3, JobStatus.SUCCEEDED, now, started_at=now, params={"n": 3})
    producer.produce(place.topic, final.to_json(), job_id, place.partition)
    assert producer.flush(30) == 0

    assert lc.reader.last(job_id) == final
    first = lc.reader.page(job_id, 0, 5)
    assert [record.message for record in first.records] == [f"line {n}" for n in range(5)]
    assert len(lc.reader.records(job_id)) == SMALL_BATCHES + 1
    lc.reader.close()


def test_a_stalled_job_is_handed_back_though_the_job_index_cannot_be_rebuilt(c: Clients, tmp_path) -> None:
    # Shared layout: the index is rebuilt from the history store; one without its tables (its consumer
    # never ran) must not stop the stalled-job check, which runs right after.
    shared = Clients(
        dataclasses.replace(
            c.settings, job_log_layout="shared", history_database_url=f"sqlite:///{tmp_path / 'empty.db'}"
        )
    )
    shared.redis.delete(progress.INDEX_COMPLETE_KEY)
    stalled = str(uuid.uuid4())
    progress.store(shared.redis, shared.settings, JobState(stalled, 5, 30, JobStatus.RUNNING, time.time()))
    shared.redis.hset(progress.RUNNING_KEY, stalled, json.dumps({"type": "count", "params": {"n": 30}}))
    assert service.recover_stalled_jobs(shared) == [stalled]
    assert not shared.redis.exists(progress.INDEX_COMPLETE_KEY)  # tried again at the next check
    service.cancel_job(stalled, shared)  # the task it got back runs no step on a later test's worker
