"""Durability on Apache Kafka (issue 29): the broker stopped or killed while a job writes its steps, and
the whole stack stopped and started again. Each test has an Apache Kafka node of its own (its data in the
test's folder); the logs are read back with kafka-python, another client than the app's."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from settings import Settings, load_settings
from stack import services
from stack.processes import Child, free_port
from tasks import service
from tasks.clients import Clients
from tasks.joblog import log_place
from tasks.model import JobStatus
from tests.conftest import BOTH_LAYOUTS, Restartable, free_port_pair, wait_finished, wait_for
from tests.test_pipeline import assert_complete_log, read_log

# The steps of the job that runs through the faults: about 8 s of work (STEP_DELAY_MS 2 in the tests).
STEPS = 4_000
# A worker that waits out a broker's absence instead of failing the job (BROKER_WAIT_S).
PATIENT = {"BROKER_WAIT_S": "120"}


@pytest.fixture
def own_apache(tmp_path: Path) -> Iterator[tuple[Restartable, Settings]]:
    """An Apache Kafka node of the test's own, with its log on disk, that it can stop, kill and start."""
    port = free_port_pair()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "EMBEDDED_KAFKA": "apache"}
    settings = load_settings({**env, "RUN_DIR": str(tmp_path)})
    server = Restartable(services.plan_kafka(settings), settings)
    server.start()
    yield server, settings
    if server.running:
        server.stop()


def stopped(server: Restartable, how: int) -> None:
    """Stop the broker with SIGTERM (its controlled shutdown) or SIGKILL (as if its machine died)."""
    assert server.running is not None
    if how == signal.SIGKILL:
        server.running.kill_group()
        server.running = None
    else:
        server.stop()


# Each stop in one layout (the suite's time): SIGTERM in the topic layout, SIGKILL in the shared one.
@pytest.mark.parametrize(
    ("how", "log_layout"),
    [(signal.SIGTERM, "topic"), (signal.SIGKILL, "shared")],
    ids=["sigterm-topic", "sigkill-shared"],
)
def test_a_job_writing_steps_outlives_its_broker_stopped_or_killed_and_logs_each_step_once(
    own_apache: tuple[Restartable, Settings], start_worker: Callable[..., Child], log_layout: str, how: int
) -> None:
    server, own = own_apache
    oc = Clients(replace(own, job_log_layout=log_layout))
    start_worker("d", concurrency=1, KAFKA_BOOTSTRAP_SERVERS=own.kafka_bootstrap_servers, **PATIENT)
    state = service.submit_job("count", {"n": STEPS}, oc)
    wait_for(lambda: service.get_job(state.job_id, oc).step > 300, what="the job to write steps")

    stopped(server, how)
    # The job goes on meanwhile: its records wait in its producer for the broker to come back.
    at_stop = service.get_job(state.job_id, oc).step
    wait_for(lambda: service.get_job(state.job_id, oc).step > at_stop + 200, what="steps while the broker is down")
    server.start()

    final = wait_finished(oc, state.job_id, timeout_s=120)
    assert final.status is JobStatus.SUCCEEDED, final.error
    assert_complete_log(read_log(oc.settings, state.job_id), state.job_id, STEPS)


def durable_redis(tmp_path: Path) -> Restartable:
    """A Redis that keeps its data in an append-only file, as `make run`'s and compose's do."""
    port = free_port()
    tmp_path.mkdir()
    settings = load_settings({**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "RUN_DIR": str(tmp_path)})
    command = [services.redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    return Restartable(services.Service("redis", "127.0.0.1", port, command), settings)


# A group coordinator that a broker just started is still loading, or not yet known: ask again.
COORDINATOR_MOVING = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def commit_offset(bootstrap: str, group: str, partition: TopicPartition) -> None:
    """Commit the partition's offset for a consumer group, as the history consumer commits its own."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})

    def commit() -> bool:
        try:
            consumer.commit(offsets=[partition], asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() not in COORDINATOR_MOVING:
                raise
            return False
        return True

    wait_for(commit, 60, "the group coordinator to take a commit")
    consumer.close()


def committed_offset(bootstrap: str, group: str, partition: TopicPartition) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    [found] = consumer.committed([TopicPartition(partition.topic, partition.partition)], timeout=60)
    consumer.close()
    return int(found.offset)


@BOTH_LAYOUTS
def test_the_whole_stack_stopped_and_started_again_keeps_every_log_and_resumes_the_running_job(
    own_apache: tuple[Restartable, Settings], tmp_path: Path, start_worker: Callable[..., Child], log_layout: str
) -> None:
    kafka, own = own_apache
    store = durable_redis(tmp_path / "redis")
    store.start()
    stack = replace(own, job_log_layout=log_layout, redis_url=store.settings.redis_url)
    env = {"KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers, "REDIS_URL": stack.redis_url, **PATIENT}
    try:
        c = Clients(stack)
        first = start_worker("s1", concurrency=1, **env)
        done = [service.submit_job("count", {"n": n}, c).job_id for n in (20, 300)]
        for job_id in done:
            ended = wait_finished(c, job_id)
            assert ended.status is JobStatus.SUCCEEDED, ended.error
        place = log_place(stack, done[1])
        committed = TopicPartition(place.topic, place.partition, 7)
        commit_offset(stack.kafka_bootstrap_servers, "durability", committed)
        running = service.submit_job("count", {"n": STEPS}, c).job_id
        wait_for(lambda: service.get_job(running, c).step > 500, what="the long job to run")

        # Everything stops as `docker compose stop` or Ctrl-C stops it: the worker hands its job back.
        first.stop()
        store.stop()
        kafka.stop()
        kafka.start()
        store.start()

        c = Clients(stack)
        # The finished jobs' logs, read from the broker that was stopped, by another client.
        for job_id, n in zip(done, (20, 300), strict=True):
            assert_complete_log(read_log(stack, job_id), job_id, n)
        kept = committed_offset(stack.kafka_bootstrap_servers, "durability", committed)
        assert kept == committed.offset, "a consumer group's offset survives the restart"
        start_worker("s2", concurrency=1, **env)
        final = wait_finished(c, running, timeout_s=120)
        assert final.status is JobStatus.SUCCEEDED, final.error
        records = read_log(stack, running)
        assert_complete_log(records, running, STEPS)
        resumed = [r for r in records if r.get("params") is not None and r["status"] == "running"][1:]
        assert len(resumed) == 1, "the job resumed once"
        assert resumed[0]["step"] > 500, "the job resumed after its last logged step"
    finally:
        if store.running:
            redis.Redis.from_url(stack.redis_url).flushall()
            store.stop()
