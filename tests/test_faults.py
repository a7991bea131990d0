"""Faults, for real: workers stopped and killed, Redis and the broker stopped and started again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from rxapp.hub import RESYNC, ProgressHub
from settings import Settings, load_settings
from stack import services
from stack.processes import Child, asgi_command, free_port, http_ok
from tasks import progress, service
from tasks.clients import Clients
from tasks.model import JobNotFound, JobState, JobStatus
from tasks.worker import runner
from tests.conftest import BOTH_BROKERS, BOTH_LAYOUTS, Restartable, free_port_pair, run_async, wait_finished, wait_for
from tests.test_api import call
from tests.test_pipeline import assert_complete_log, read_log


@pytest.fixture
def own_kafka(tmp_path: Path, broker: str) -> Iterator[tuple[Restartable, Settings]]:
    """A broker of the test's own, of the test's kind (Tansu keeps nothing over a restart, Apache Kafka its log)."""
    port = free_port_pair()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "BROKER_WAIT_S": "3", "RUN_DIR": str(tmp_path)}
    env["EMBEDDED_KAFKA"] = broker
    settings = load_settings(env)
    server = Restartable(services.plan_kafka(settings), settings)
    server.start()
    yield server, settings
    if server.running:
        server.stop()


@BOTH_LAYOUTS
def test_sigterm_hands_the_job_back_and_the_next_worker_finishes_it(c: Clients, settings: Settings, start_worker):
    n = 4000
    first = start_worker("leaving", concurrency=1)
    state = service.submit_job("count", {"n": n}, c)
    wait_for(lambda: service.get_job(state.job_id, c).step > 300, what="the job to get going")
    first.signal(signal.SIGTERM)
    first.process.wait(30)
    assert service.get_job(state.job_id, c).step < n, "the job was handed back, not finished by the leaving worker"
    start_worker("next", concurrency=1)
    final = wait_finished(c, state.job_id, timeout_s=120)
    assert final.status is JobStatus.SUCCEEDED
    assert_complete_log(read_log(c.settings, state.job_id), state.job_id, n)


@BOTH_LAYOUTS
def test_killed_worker_under_load_loses_no_job_and_repeats_no_step(c: Clients, settings: Settings, start_worker):
    n = 1500
    doomed = start_worker("doomed", concurrency=2)
    jobs = [service.submit_job("count", {"n": n}, c) for _ in range(6)]
    wait_for(lambda: sum(service.get_job(j.job_id, c).step > 200 for j in jobs) >= 2, what="two jobs to run")
    doomed.kill_group()
    start_worker("rescuer", concurrency=2, beat=True)
    for job in jobs:
        assert wait_finished(c, job.job_id, timeout_s=180).status is JobStatus.SUCCEEDED
        assert_complete_log(read_log(c.settings, job.job_id), job.job_id, n)


async def _follow_through_restart(
    settings: Settings, job_id: str, restart: Callable[[], None]
) -> list[JobState | None]:
    """A page's view of the job through the shared listener, while Redis is restarted under it."""
    hub = ProgressHub(settings)
    listener = asyncio.create_task(hub.run(app=None))
    feed = hub.feed("a-page")
    await feed.follow({job_id})
    seen: list[JobState | None] = []
    restarted = False
    try:
        async with asyncio.timeout(90):
            while not (seen and seen[-1] is not RESYNC and seen[-1].status.finished):
                seen.append(await feed.queue.get())
                if not restarted and len(seen) >= 3:
                    await asyncio.to_thread(restart)
                    restarted = True
    finally:
        listener.cancel()
    return seen


def _topic_last_step(c: Clients, job_id: str) -> int:
    try:
        last = c.reader.last(job_id)
    except JobNotFound:
        return 0
    return last.step if last is not None else 0


@BOTH_LAYOUTS
def test_redis_restarted_mid_job(c: Clients, own_redis, start_worker, log_layout: str):
    server, own = own_redis
    oc = Clients(replace(own, job_log_layout=log_layout))
    start_worker("r", concurrency=1, REDIS_URL=own.redis_url)
    n = 4000
    state = service.submit_job("count", {"n": n}, oc)
    # Running, with its first records in Kafka (a fresh producer's first batch takes a moment).
    wait_for(lambda: _topic_last_step(oc, state.job_id) > 200, what="the job to run")
    during: dict[str, int] = {}

    def restart() -> None:
        server.stop()
        # Redis is gone: the worker keeps stepping and logging, get_job answers from Kafka.
        during["at_outage"] = _topic_last_step(oc, state.job_id)
        wait_for(lambda: _topic_last_step(oc, state.job_id) > during["at_outage"] + 100, what="steps without Redis")
        during["kafka_step"] = service.get_job(state.job_id, oc).step
        server.start()
        during["after_restart"] = service.get_job(state.job_id, oc).step  # the snapshot was lost: from Kafka

    seen = run_async(_follow_through_restart(own, state.job_id, restart))
    # Steps taken while Redis was down: only the job's log could have told them.
    assert during["kafka_step"] > during["at_outage"] + 100
    # Redis came back empty, and the job's state did not go back.
    assert during["after_restart"] >= during["kafka_step"]
    assert RESYNC in seen, "the listener reconnected and told its page to re-read"
    final = seen[-1]
    assert final is not None
    assert final.status is JobStatus.SUCCEEDED
    assert final.step == n
    assert_complete_log(read_log(c.settings, state.job_id), state.job_id, n)
    assert service.get_job(state.job_id, oc) == final


@BOTH_LAYOUTS
def test_broker_down_at_start_fails_the_job_in_bounded_time_then_recovers(own_kafka, start_worker, log_layout: str):
    server, own = own_kafka
    oc = Clients(replace(own, job_log_layout=log_layout))
    start_worker("k", concurrency=1, KAFKA_BOOTSTRAP_SERVERS=own.kafka_bootstrap_servers, BROKER_WAIT_S="3")
    server.stop()
    state = service.submit_job("count", {"n": 100}, oc)
    started = time.monotonic()
    failed = wait_finished(oc, state.job_id, timeout_s=30)
    assert failed.status is JobStatus.FAILED
    assert "Kafka" in (failed.error or "") or "broker" in (failed.error or "").lower()
    assert time.monotonic() - started < 15, "the job waited a bounded time"

    server.start()
    again = service.submit_job("count", {"n": 100}, oc)
    assert wait_finished(oc, again.job_id, timeout_s=60).status is JobStatus.SUCCEEDED


# The two tests below restart the broker: Tansu comes back empty, Apache Kafka with its log. They run
# in the topic layout only: in the shared one, Tansu makes the lost shared topic again, with its own
# default of 4 partitions, for the first of the worker's clients that asks about it, before the worker
# can make it with JOB_LOG_PARTITIONS; the job then fails with that mismatch named
# (test_a_shared_topic_with_another_partition_count_is_named). See the README.
TOPIC_LAYOUT_ONLY = pytest.mark.parametrize("log_layout", ["topic"])


@BOTH_BROKERS
@TOPIC_LAYOUT_ONLY
def test_broker_gone_mid_job_fails_it_clearly_and_the_worker_goes_on(own_kafka, start_worker, log_layout: str):
    server, own = own_kafka
    oc = Clients(replace(own, job_log_layout=log_layout))
    start_worker("k", concurrency=1, KAFKA_BOOTSTRAP_SERVERS=own.kafka_bootstrap_servers, BROKER_WAIT_S="3")
    state = service.submit_job("count", {"n": 100_000}, oc)
    wait_for(lambda: service.get_job(state.job_id, oc).step > 300, what="the job to run")
    server.stop()
    failed = wait_finished(oc, state.job_id, timeout_s=30)
    assert failed.status is JobStatus.FAILED
    assert failed.error

    server.start()  # Tansu comes back empty: the worker's next job must not be stuck on the old producer
    again = service.submit_job("count", {"n": 200}, oc)
    assert wait_finished(oc, again.job_id, timeout_s=60).status is JobStatus.SUCCEEDED
    assert_complete_log(read_log(oc.settings, again.job_id), again.job_id, 200)


@BOTH_BROKERS
@TOPIC_LAYOUT_ONLY
def test_a_broker_restarted_between_jobs_costs_no_job(own_kafka, start_worker, log_layout: str):
    server, own = own_kafka
    oc = Clients(replace(own, job_log_layout=log_layout))
    start_worker("k", concurrency=1, KAFKA_BOOTSTRAP_SERVERS=own.kafka_bootstrap_servers, BROKER_WAIT_S="3")
    assert wait_finished(oc, service.submit_job("count", {"n": 200}, oc).job_id).status is JobStatus.SUCCEEDED
    server.stop()
    server.start()  # Tansu: empty, and it does not know the worker's producer any more
    job = service.submit_job("count", {"n": 300}, oc)
    assert wait_finished(oc, job.job_id, timeout_s=60).status is JobStatus.SUCCEEDED
    assert_complete_log(read_log(oc.settings, job.job_id), job.job_id, 300)


def test_a_shared_topic_with_another_partition_count_is_named(c: Clients) -> None:
    # Made elsewhere (by hand, or by a broker's own defaults), the shared topic has 4 partitions where
    # JOB_LOG_PARTITIONS says 12: a job would be looked for in a partition that does not exist.
    shared = Clients(replace(c.settings, job_log_layout="shared", job_log_topic=f"jobs-{uuid.uuid4().hex[:8]}"))
    topic = NewTopic(shared.settings.job_log_topic, 4, 1)
    admin = AdminClient({"bootstrap.servers": c.settings.kafka_bootstrap_servers})
    admin.create_topics([topic])[topic.topic].result()
    job_id = str(uuid.uuid4())
    progress.store(shared.redis, shared.settings, JobState(job_id, 0, 3, JobStatus.QUEUED, time.time()))
    final = runner.run_job(job_id, "count", {"n": 3}, shared)
    assert (final.status, final.step) == (JobStatus.FAILED, 0)
    assert final.error is not None
    assert f"{topic.topic} has 4 partitions in Kafka, and JOB_LOG_PARTITIONS says 12" in final.error


def test_a_worker_process_makes_the_shared_topic_at_its_first_job_and_after_a_broker_failure(c: Clients) -> None:
    # Not one CreateTopics a job (it cost a third of a small job's time): the first job of the process
    # makes (or finds) the topic and checks its partitions; after a broker failure, the next job again.
    shared = Clients(replace(c.settings, job_log_layout="shared", job_log_topic=f"jobs-{uuid.uuid4().hex[:8]}"))
    asked: list[str] = []
    create_topics = shared.admin._admin.create_topics

    def counted(topics: list[NewTopic], **options):  # the real call, counted
        asked.extend(topic.topic for topic in topics)
        return create_topics(topics, **options)

    shared.admin._admin.create_topics = counted  # type: ignore[method-assign,assignment]

    def run() -> JobState:
        job_id = str(uuid.uuid4())
        progress.store(shared.redis, shared.settings, JobState(job_id, 0, 3, JobStatus.QUEUED, time.time()))
        return runner.run_job(job_id, "count", {"n": 3}, shared)

    assert [run().status for _ in range(3)] == [JobStatus.SUCCEEDED] * 3
    assert asked == [shared.settings.job_log_topic]
    shared.reset_writer()  # what a job that could not write its log does
    assert run().status is JobStatus.SUCCEEDED
    assert asked == [shared.settings.job_log_topic] * 2


def test_the_api_answers_from_kafka_and_503_while_redis_is_down(own_redis, start_worker, tmp_path: Path):
    """Through HTTP, on an API server of its own whose Redis the test stops and starts again."""
    server, own = own_redis
    start_worker("api", concurrency=1, REDIS_URL=own.redis_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/jobs"
    env = {**os.environ, "REDIS_URL": own.redis_url}
    api = Child("api", asgi_command("rxapp.api:api", port), tmp_path / "api.log", env)
    try:
        api.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/openapi.json"), 60, "the API serving")
        status, done = call("POST", base, {"n": 50})
        assert status == 202
        final = wait_for(lambda: (s := call("GET", f"{base}/{done['job_id']}")[1])["status"] == "succeeded" and s,
                         what="the job to succeed")  # fmt: skip
        _, running = call("POST", base, {"n": 1_000_000})
        wait_for(lambda: call("GET", f"{base}/{running['job_id']}")[1]["step"] > 0, what="the long job to run")

        server.stop()
        # What the log knows, the API still answers: from Kafka.
        assert call("GET", f"{base}/{done['job_id']}") == (200, final)
        status, log = call("GET", f"{base}/{done['job_id']}/log")
        assert status == 200
        assert_complete_log(log["records"], done["job_id"], 50)
        # What needs Redis is refused as unavailable, without the server's address, and creates nothing.
        for method, url, body in [("POST", base, {"n": 5}), ("POST", f"{base}/{running['job_id']}/cancel", None)]:
            status, answer = call(method, url, body)
            assert status == 503, answer
            assert answer["error"].startswith("a service Jobstream needs is unreachable"), answer
            assert str(server.service.port) not in answer["error"]

        server.start()  # empty: the running job's snapshot comes back with its next publish
        assert call("POST", f"{base}/{running['job_id']}/cancel")[0] == 200
        cancelled = wait_for(lambda: (s := call("GET", f"{base}/{running['job_id']}")[1])["status"] == "cancelled"
                             and s, what="the cancel")  # fmt: skip
        assert cancelled["step"] > 0
    finally:
        api.stop()
