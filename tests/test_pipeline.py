"""The job pipeline against real Redis, a real Kafka-protocol broker and real Celery workers."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import uuid
from dataclasses import replace
from typing import cast

import pytest
import redis
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, TopicPartition

from settings import Settings
from stack.processes import Child
from tasks import joblog, progress, service
from tasks.clients import Clients
from tasks.joblog import log_place, topic_name
from tasks.jobtypes import InvalidParams
from tasks.model import JobNotFound, JobState, JobStatus, LogLine
from tasks.worker import runner
from tasks.worker.celery_app import app as celery_app
from tests.conftest import BOTH_BROKERS, BOTH_LAYOUTS, wait_finished, wait_for


def read_log(settings: Settings, job_id: str) -> list[dict]:
    """The job's log read back with kafka-python (another client implementation than the app's): its
    topic, or its partition of the shared topic, the records with its id as their key."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, consumer_timeout_ms=1500
    )
    place = log_place(settings, job_id)
    partition = TopicPartition(place.topic, place.partition)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    # A record without a value is a fence (see JobLogWriter.fence), not one of the job's records.
    records = [json.loads(m.value) for m in consumer if m.key == job_id.encode() and m.value is not None]
    consumer.close()
    return records


def state_records(records: list[dict]) -> list[dict]:
    """The states of a log (records from Kafka have no `kind`, the API's say "state"), not its lines."""
    return [r for r in records if r.get("kind", "state") == "state"]


def line_records(records: list[dict]) -> list[dict]:
    """The lines of a log: what the job logged, and its traceback."""
    return [r for r in records if r.get("kind", "state") != "state"]


def step_records(records: list[dict]) -> list[dict]:
    """The records of steps done: not a run's first record (which holds the params), nor a line."""
    return [r for r in state_records(records) if r["status"] == "running" and r.get("params") is None]


def assert_complete_log(
    records: list[dict], job_id: str, steps: int, final: str = "succeeded", total: int | None = None
) -> None:
    """A first record with the params, every step 1..steps exactly once, in order, then one final
    record on the last of them (`total` is the job's size when it ended early). A run resumed after
    a worker's death begins with a record of its own that says so, at the step it resumes after."""
    total = steps if total is None else total
    records = state_records(records)
    first = records[0]
    assert (first["status"], first["step"], first["params"]) == ("running", 0, records[-1]["params"])
    assert [r["step"] for r in step_records(records)] == list(range(1, steps + 1))
    for resumed in [r for r in records[1:] if r.get("params") is not None and r["status"] == "running"]:
        assert resumed["message"].startswith(f"resumed after step {resumed['step']}: "), resumed
        assert resumed["step"] in (0, *[r["step"] for r in step_records(records)])
    assert records[-1]["status"] == final
    assert records[-1]["step"] == steps
    assert all(r["job_id"] == job_id for r in records)
    assert all(r["total"] == total for r in [*step_records(records), records[-1]])
    assert first["total"] in (0, total)  # 0: not known before the function said
    assert {r["status"] for r in records[:-1]} == {"running"}


class Subscriber(threading.Thread):
    """Collects every message published on one job's channel, from before the job starts."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        super().__init__(daemon=True)
        self.pubsub = redis.Redis.from_url(settings.redis_url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(progress.channel(job_id))
        self.messages: list[tuple[float, JobState]] = []
        self.start()

    def run(self) -> None:
        for message in self.pubsub.listen():
            state = JobState.from_json(message["data"])
            self.messages.append((time.monotonic(), state))
            if state.status.finished:
                return


def submit_watched(c: Clients, n: int) -> tuple[str, Subscriber]:
    """Submit with a subscriber listening already (the job id is known before the task is sent)."""
    job_id = str(uuid.uuid4())
    subscriber = Subscriber(c.settings, job_id)
    state = JobState(job_id, 0, n, JobStatus.QUEUED, time.time(), params={"n": n})
    progress.store(c.redis, c.settings, state)
    c.celery.send_task("tasks.jobs.run_job", args=(job_id, "count", {"n": n}), task_id=job_id)
    return job_id, subscriber


@BOTH_BROKERS
@BOTH_LAYOUTS
def test_a_job_logs_every_step_and_publishes_coalesced_progress(
    c: Clients, settings: Settings, worker: Child, log_layout: str
):
    n = 1000
    job_id, subscriber = submit_watched(c, n)
    final = wait_finished(c, job_id)
    subscriber.join(10)

    assert final.status is JobStatus.SUCCEEDED
    assert (final.step, final.total) == (n, n)
    records = read_log(c.settings, job_id)
    assert_complete_log(records, job_id, n)
    # A topic of its own in the topic layout; none in the shared one, whose one topic holds the job.
    topics = AdminClient({"bootstrap.servers": c.settings.kafka_bootstrap_servers}).list_topics(timeout=10).topics
    assert (topic_name(c.settings, job_id) in topics) is (log_layout == "topic")
    assert (c.settings.job_log_topic in topics) or log_layout == "topic"
    # The snapshot is the final record, field for field.
    assert progress.load(c.redis, job_id) == JobState.from_json(json.dumps(records[-1]))

    states = [state for _, state in subscriber.messages]
    steps = [state.step for state in states]
    assert steps == sorted(steps), "progress messages arrive in step order"
    assert states[-1] == final
    duration = subscriber.messages[-1][0] - subscriber.messages[0][0]
    allowed = duration / settings.progress_interval_s + 2
    assert 2 <= len(states) <= allowed, f"{len(states)} messages in {duration:.2f}s (at most {allowed:.0f})"


@BOTH_LAYOUTS
def test_get_job_while_running_and_from_kafka_when_redis_lost_it(c: Clients, worker: Child):
    state = service.submit_job("count", {"n": 20_000}, c)
    # Well into the run, so the first batches of records have reached the broker.
    running = wait_for(
        lambda: (s := service.get_job(state.job_id, c)).status is JobStatus.RUNNING and s.step > 1000 and s,
        what="the job to run",
    )
    assert 0 < running.step < 20_000

    c.redis.delete(progress.snapshot_key(state.job_id), progress.params_key(state.job_id))
    from_kafka = service.get_job(state.job_id, c)
    assert from_kafka.status is JobStatus.RUNNING
    assert (from_kafka.job_type, from_kafka.params) == ("count", {"n": 20_000}), "from the log's first record"
    assert running.step <= from_kafka.step <= 20_000

    service.cancel_job(state.job_id, c)
    final = wait_finished(c, state.job_id)
    # Finished: nothing writes its snapshot any more, so what comes back is the refill from Kafka.
    c.redis.delete(progress.snapshot_key(state.job_id))
    assert service.get_job(state.job_id, c) == final, "a finished job reads back from Kafka exactly"
    assert progress.load(c.redis, state.job_id) == final, "the snapshot is refilled from the log"


def test_unknown_and_malformed_ids_are_not_found(c: Clients):
    with pytest.raises(JobNotFound):
        service.get_job(str(uuid.uuid4()), c)
    for bad in ["x", "../../etc/passwd", "*", str(uuid.uuid4()).upper(), None, 7]:
        with pytest.raises(JobNotFound):
            service.get_job(bad, c)
        with pytest.raises(JobNotFound):
            service.cancel_job(bad, c)


def test_submit_refuses_bad_input_and_creates_nothing(c: Clients):
    before = set(c.redis.scan_iter("jobstream:*"))
    queued = c.redis.llen("celery")
    for bad in [0, -3, 1.5, "", "abc", 10**12, True, None, "1e3"]:
        with pytest.raises(InvalidParams, match=r"^n: "):
            service.submit_job("count", {"n": bad}, c)
    # Nothing new; an earlier test's short-lived keys (an owner's submit bucket) may have expired since.
    assert set(c.redis.scan_iter("jobstream:*")) - before == set()
    assert c.redis.llen("celery") == queued


@BOTH_LAYOUTS
def test_cancel_a_queued_job_it_never_starts_and_gets_no_topic(c: Clients, settings: Settings, start_worker):
    state = service.submit_job("count", {"n": 500}, c)  # no worker runs yet: it stays queued
    cancelled = service.cancel_job(state.job_id, c)
    assert cancelled.status is JobStatus.CANCELLED
    assert (cancelled.job_type, cancelled.params, cancelled.total) == ("count", {"n": 500}, 500)
    assert service.get_job(state.job_id, c).status is JobStatus.CANCELLED

    start_worker()  # picks the job up, sees the flag, runs no step and makes no topic
    wait_for(lambda: task_handled(c, state.job_id), what="the worker to take and end the task")
    assert not _topic_exists(c, state.job_id)
    assert service.get_job(state.job_id, c).status is JobStatus.CANCELLED
    assert not c.redis.exists(progress.lease_key(state.job_id))


def task_handled(c: Clients, job_id: str) -> bool:
    """Whether Celery's broker holds the job's task no more: neither waiting nor unacknowledged."""
    waiting = [json.loads(message) for message in cast(list[bytes], c.redis.lrange("celery", 0, -1))]
    if any(message.get("headers", {}).get("id") == job_id for message in waiting):
        return False
    return not any(job_id.encode() in raw for raw in cast(list[bytes], c.redis.hvals("unacked")))


def _topic_exists(c: Clients, job_id: str) -> bool:
    try:
        return c.reader.last(job_id) is not None
    except JobNotFound:
        return False


@BOTH_LAYOUTS
def test_cancel_a_running_job_stops_within_one_progress_interval(c: Clients, settings: Settings, worker: Child):
    state = service.submit_job("count", {"n": 1_000_000}, c)
    wait_for(lambda: service.get_job(state.job_id, c).step > 50, what="the job to run")
    asked_at = time.time()
    service.cancel_job(state.job_id, c)
    final = wait_finished(c, state.job_id)
    assert final.status is JobStatus.CANCELLED
    records = read_log(c.settings, state.job_id)
    steps = [r["step"] for r in step_records(records)]
    assert steps == list(range(1, final.step + 1))
    assert (records[-1]["status"], records[-1]["step"]) == ("cancelled", final.step)
    # The runner reads the flag at each progress publish: what runs after the request is at most
    # one interval's worth of steps (fewer on a busy machine, where each step takes longer).
    after = [r["step"] for r in step_records(records) if r["ts"] > asked_at]
    allowed = math.ceil(settings.progress_interval_ms / settings.step_delay_ms) + 5
    assert len(after) <= allowed, f"{len(after)} steps ran after the cancel (at most {allowed})"


# On Tansu in one layout: its part of the resume is the read of the last step (tested in both below).
@pytest.mark.parametrize(("log_layout", "broker"), [("topic", "apache"), ("shared", "apache"), ("shared", "tansu")])
def test_a_job_survives_its_worker_being_killed(c: Clients, settings: Settings, start_worker):
    n = 4000
    first = start_worker("doomed", concurrency=1)
    state = service.submit_job("count", {"n": n}, c)
    wait_for(lambda: service.get_job(state.job_id, c).step > 300, what="the job to get going")
    first.kill_group()
    assert service.get_job(state.job_id, c).step < n
    # Its message stays unacknowledged in Redis (redelivered only after the visibility timeout);
    # the stalled-job check, run by beat, sees the lapsed lease and requeues the job.
    start_worker("second", concurrency=1, beat=True)
    final = wait_finished(c, state.job_id, timeout_s=120)
    assert final.status is JobStatus.SUCCEEDED
    assert_complete_log(read_log(c.settings, state.job_id), state.job_id, n)


@BOTH_LAYOUTS
def test_queued_jobs_behind_a_killed_worker_run_on_the_next_one(c: Clients, settings: Settings, start_worker):
    # A worker reserves only what its pool runs (prefetch multiplier 1 with late acks): jobs waiting
    # behind the running ones stay in the queue, not unacknowledged in a dead worker's hands until
    # Redis' visibility timeout (1 h). With a multiplier of 4 this test fails.
    first = start_worker("doomed", concurrency=2)
    running = [service.submit_job("count", {"n": 4000}, c) for _ in range(2)]
    wait_for(lambda: all(service.get_job(s.job_id, c).step > 300 for s in running), what="the jobs to get going")
    waiting = [service.submit_job("count", {"n": 500}, c) for _ in range(2)]
    # Nothing to await: the point is that the worker does not take them. A prefetching worker takes
    # them within milliseconds of their publish; a second is the window in which it must not.
    time.sleep(1.0)
    first.kill_group()
    assert all(service.get_job(state.job_id, c).status is JobStatus.QUEUED for state in waiting)
    start_worker("second", concurrency=2, beat=True)
    for state in running + waiting:
        assert wait_finished(c, state.job_id, timeout_s=120).status is JobStatus.SUCCEEDED
        assert_complete_log(read_log(c.settings, state.job_id), state.job_id, state.total)


@BOTH_LAYOUTS
def test_a_job_survives_its_pool_process_being_killed(c: Clients, settings: Settings, start_worker):
    n = 3000
    w = start_worker("pool", concurrency=1)
    state = service.submit_job("count", {"n": n}, c)
    wait_for(lambda: service.get_job(state.job_id, c).step > 300, what="the job to get going")
    (child,) = w.children()
    os.kill(child, signal.SIGKILL)  # task_reject_on_worker_lost: the parent requeues the task
    final = wait_finished(c, state.job_id, timeout_s=120)
    assert final.status is JobStatus.SUCCEEDED
    assert_complete_log(read_log(c.settings, state.job_id), state.job_id, n)


def test_retention_deletes_old_finished_jobs_and_keeps_recent_ones(c: Clients, settings: Settings, start_worker):
    worker = start_worker("retention")
    old = service.submit_job("count", {"n": 5}, c)
    old_end = wait_finished(c, old.job_id).ts
    recent = service.submit_job("count", {"n": 5}, c)
    assert wait_finished(c, recent.job_id).ts > old_end
    # "Now" is just past the old job's end plus the retention: the recent one is within it.
    now = old_end + settings.retention_s + 0.0001
    assert service.purge_expired_jobs(c, now=now) == []
    with pytest.raises(JobNotFound):
        service.get_job(old.job_id, c)  # condemned: not found at once, its log no longer read
    assert service.get_job(recent.job_id, c).status is JobStatus.SUCCEEDED
    assert old.job_id in c.admin.job_ids()

    # The topic goes once no consumer that may have read it is alive. Time is simulated here,
    # so retire this test's and the worker's consumers by hand before the grace period "ends".
    worker.stop()
    c.reader.close()
    assert old.job_id in service.purge_expired_jobs(c, now=now + service.PURGE_GRACE_S)
    assert old.job_id not in c.admin.job_ids()
    assert recent.job_id in c.admin.job_ids()
    assert not c.redis.exists(progress.snapshot_key(old.job_id))


@BOTH_LAYOUTS
def test_two_live_copies_of_one_job_run_each_step_once(c: Clients, settings: Settings, start_worker):
    worker = start_worker("twice", concurrency=2)
    state = service.submit_job("count", {"n": 1_000_000}, c)
    wait_for(lambda: service.get_job(state.job_id, c).step > 100, what="the job to run")
    # A second copy of its task, as a redelivery sends it, while the first copy runs: the second waits
    # for the lease, and stops when the first still holds it.
    c.celery.send_task("tasks.jobs.run_job", args=(state.job_id, "count", state.params), task_id=state.job_id)
    wait_for(lambda: f"job {state.job_id} is run by another worker; this copy stops" in worker.log(),
             progress.LEASE_MS / 1000 + 30, "the second copy to give way")  # fmt: skip
    assert service.get_job(state.job_id, c).status is JobStatus.RUNNING
    service.cancel_job(state.job_id, c)
    final = wait_finished(c, state.job_id)
    assert final.status is JobStatus.CANCELLED
    assert_complete_log(read_log(c.settings, state.job_id), state.job_id, final.step, total=state.total,
                        final="cancelled")  # fmt: skip


@BOTH_LAYOUTS
def test_a_job_whose_step_raises_fails_with_the_error_and_its_log_ends_there(c: Clients, settings: Settings):
    job_id = str(uuid.uuid4())
    progress.store(c.redis, settings, JobState(job_id, 0, 50, JobStatus.QUEUED, time.time()))
    # The runner alone, on the real Redis and broker: no Celery task is queued for this job.
    final = runner.run_job(job_id, "steps_then_fail", {"n": 50, "fail_at": 20}, c)
    assert (final.status, final.step, final.error) == (JobStatus.FAILED, 19, "ValueError: step 20 broke")
    assert service.get_job(job_id, c) == final
    records = read_log(c.settings, job_id)
    assert_complete_log(records, job_id, 19, total=50, final="failed")
    assert records[-1]["error"] == "ValueError: step 20 broke"
    # The step records are formatted by hand in the hot loop: each is exactly what JobState writes.
    for record in state_records(records):
        assert json.loads(JobState.from_json(json.dumps(record)).to_json()) == record
    assert [r["kind"] for r in line_records(records)] == ["error"], "the traceback, after the last step"
    assert not c.redis.hexists(progress.RUNNING_KEY, job_id)


def test_the_purge_runs_as_its_beat_entry_says_on_a_real_worker(c: Clients, start_worker):
    entry = celery_app.conf.beat_schedule["purge-expired-jobs"]
    # A retention of about a second for this worker: the job below is past it once it has finished.
    retention_h = 0.0003
    start_worker("purge", JOB_RETENTION_HOURS=str(retention_h))
    final = wait_finished(c, service.submit_job("count", {"n": 5}, c).job_id)
    wait_for(lambda: time.time() > final.ts + retention_h * 3600, what="the retention to pass")
    c.celery.send_task(entry["task"])  # what beat sends
    wait_for(lambda: c.redis.zscore(progress.PURGING_KEY, final.job_id) is not None, what="the purge to run")
    with pytest.raises(JobNotFound):
        service.get_job(final.job_id, c)


def _job_in_partition_of(settings: Settings, job_id: str) -> str:
    """Another job id whose records go to the same partition as `job_id`'s (itself in the topic layout)."""
    if not settings.shared_log:
        return job_id
    place = log_place(settings, job_id)
    return next(other for other in iter(lambda: str(uuid.uuid4()), "") if log_place(settings, other) == place)


def _append_batch(c: Clients, job_id: str, lines: int) -> None:
    """`lines` log lines of the job, sent as one batch (a broker may then report the partition's end late)."""
    place = log_place(c.settings, job_id)
    for n in range(lines):
        c.writer.append(place, job_id, LogLine(job_id, f"line {n}", time.time()).to_json())
    c.writer.flush()


@BOTH_BROKERS
@BOTH_LAYOUTS
def test_a_resumed_job_finds_its_last_step_though_a_batch_of_records_follows_it(c: Clients, settings: Settings):
    # An earlier run wrote steps 0 to 5, each followed by a long batch of records (another job's in the
    # shared topic, the job's own lines in its topic), and died. Reading all of them takes longer than
    # a reader follows a growing log (CHASE_S), and a broker may report the partition's end behind its
    # last record: the runner's read ends at a fence it writes, so it finds step 5 and runs only step 6.
    job_id = str(uuid.uuid4())
    place = log_place(c.settings, job_id)
    c.admin.create(job_id)
    if c.settings.shared_log:
        assert progress.mark_log_start(c.redis, c.settings, job_id, c.reader.end_offset(job_id))
    now = time.time()
    interrupted = JobState(job_id, 0, 6, JobStatus.RUNNING, now, started_at=now, params={"n": 6})
    neighbour = _job_in_partition_of(c.settings, job_id)
    for step in range(6):
        c.writer.append(place, job_id, replace(interrupted, step=step).to_json())
        _append_batch(c, neighbour, 10_000)
    progress.store(c.redis, c.settings, replace(interrupted, step=5))

    final = runner.run_job(job_id, "count", {"n": 6}, c)

    assert (final.status, final.step) == (JobStatus.SUCCEEDED, 6)
    steps = [record["step"] for record in state_records(read_log(c.settings, job_id))]
    # the earlier run's 0..5, then the resumed run's first record (at step 5), step 6 and its final state
    assert steps == [0, 1, 2, 3, 4, 5, 5, 6, 6]


@pytest.mark.parametrize("log_layout", ["shared"])
def test_a_new_job_starts_at_once_after_a_batch_in_its_shared_partition(c: Clients):
    # A new job in the shared layout reads nothing back: no wait for the end of a partition whose
    # last write was a batch of another job's records.
    job_id = str(uuid.uuid4())
    c.admin.create(job_id)
    _append_batch(c, _job_in_partition_of(c.settings, job_id), 2000)
    progress.store(c.redis, c.settings, JobState(job_id, 0, 3, JobStatus.QUEUED, time.time()))
    assert runner.run_job(job_id, "count", {"n": 3}, c).status is JobStatus.SUCCEEDED
    assert [record["step"] for record in state_records(read_log(c.settings, job_id))] == [0, 1, 2, 3, 3]


def test_one_heartbeat_thread_beats_for_every_job_of_a_process(c: Clients, settings: Settings) -> None:
    """A function that reports nothing still shows its elapsed time, job after job, from the process's
    one heartbeat thread (not a thread per job)."""
    for _ in range(2):
        job_id = service.submit_job("silent", {"seconds": 1.6}, c).job_id
        listener = redis.Redis.from_url(settings.redis_url)  # not from the pool the runner uses
        pubsub = listener.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(progress.channel(job_id))
        try:
            assert runner.run_job(job_id, "silent", {"seconds": 1.6}, c).status is JobStatus.SUCCEEDED
            # What was published meanwhile waits in the socket, behind the subscribe's reply (read as None).
            published: list[JobState] = []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if (message := pubsub.get_message(timeout=0.2)) is not None:
                    published.append(JobState.from_json(message["data"]))
                elif published:
                    break
        finally:
            pubsub.close()
            listener.close()
        beats = [s for s in published if s.status is JobStatus.RUNNING and s.ts - (s.started_at or s.ts) >= 1.0]
        assert beats, f"no heartbeat among {[(s.status.value, s.ts - (s.started_at or s.ts)) for s in published]}"
    assert [thread.name for thread in threading.enumerate()].count("heartbeat") == 1


def test_a_workers_producer_is_replaced_after_many_job_topics_and_no_record_is_lost(
    c: Clients, monkeypatch: pytest.MonkeyPatch
):
    # A producer's work per record grows with the topics it has written to, and a worker process lives
    # for many jobs: in the topic layout the writer moves on to a new producer every few topics (4 here;
    # the next made 2 topics ahead). A record the old producer still holds (a run stopped before its end)
    # is sent before the move; nothing of a later run goes through the old one.
    monkeypatch.setattr(joblog, "TOPICS_PER_PRODUCER", 4)
    monkeypatch.setattr(joblog, "NEXT_PRODUCER_AHEAD", 2)
    producers = []
    job_ids = [service.submit_job("count", {"n": 2}, c).job_id for _ in range(9)]
    stopped = job_ids.pop(3)  # its run begins, then stops after one line without waiting for it
    for job_id in job_ids[:3]:
        assert runner.run_job(job_id, "count", {"n": 2}, c).status == JobStatus.SUCCEEDED
        producers.append(c.writer._producer)  # which producer wrote its records
    c.admin.create(stopped)
    c.writer.begin(log_place(c.settings, stopped))
    c.writer.append(log_place(c.settings, stopped), stopped, LogLine(stopped, "not yet sent", time.time()).to_json())
    for job_id in job_ids[3:]:
        assert runner.run_job(job_id, "count", {"n": 2}, c).status == JobStatus.SUCCEEDED
        producers.append(c.writer._producer)

    # 4 topics (3 jobs and the stopped one) on the first producer, the next 4 jobs on the second, the last on a third
    assert [producers.index(p) for p in producers] == [0, 0, 0, 3, 3, 3, 3, 7]
    assert [line["message"] for line in line_records(read_log(c.settings, stopped))] == ["not yet sent"]
    for job_id in job_ids:
        assert [r["step"] for r in state_records(read_log(c.settings, job_id))] == [0, 1, 2, 2]
