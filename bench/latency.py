"""Latency of the calls the web app makes: submit_job, get_job from Redis and from Kafka, and the
baseline's recovery read (a new consumer per request) on the same topic."""

from __future__ import annotations

from typing import Any

from bench import baseline
from bench.measure import Tick, summarize, time_calls
from bench.stack import BenchError, BenchStack
from tasks import progress, service
from tasks.joblog import topic_name
from tasks.model import JobStatus

WARMUP_CALLS = 10


def reads(
    stack: BenchStack, job_id: str, n: int, redis_calls: int, kafka_calls: int, baseline_reads: int, tick: Tick
) -> dict[str, Any]:
    """get_job with the snapshot present and deleted, and the baseline read, all of one finished job."""
    c = stack.clients

    def get_job() -> None:
        state = service.get_job(job_id, c)
        if state.status is not JobStatus.SUCCEEDED or state.step != n:
            raise BenchError(f"get_job({job_id}) returned {state.status} at step {state.step}, expected succeeded")

    def drop_snapshot() -> None:
        c.redis.delete(progress.snapshot_key(job_id))

    time_calls(get_job, WARMUP_CALLS, drop_snapshot)
    kafka = summarize(time_calls(get_job, kafka_calls, drop_snapshot))
    tick("get_job from Kafka")
    time_calls(get_job, WARMUP_CALLS)
    redis = summarize(time_calls(get_job, redis_calls))
    tick("get_job from Redis")

    topic = topic_name(stack.settings, job_id)

    def recovery_read() -> None:
        last = baseline.recovery_read(stack.settings, topic)
        if b'"succeeded"' not in last:
            raise BenchError(f"the baseline recovery read of {topic} returned {last[:120]!r}")

    recovery = summarize(time_calls(recovery_read, baseline_reads))
    tick("baseline recovery read")
    return {
        "get_job_redis_p95_ms": redis["p95_ms"],
        "get_job_kafka_p95_ms": kafka["p95_ms"],
        "baseline_recovery_read_p95_ms": recovery["p95_ms"],
        "latency": {"get_job_redis": redis, "get_job_kafka": kafka, "baseline_recovery_read": recovery},
    }


def submits(stack: BenchStack, count: int, tick: Tick) -> dict[str, Any]:
    """submit_job, `count` times: each writes a snapshot and enqueues a Celery task into the bench's
    database. No worker runs them; the database is emptied afterwards."""
    c = stack.clients
    try:
        time_calls(lambda: service.submit_job("count", {"n": 10}, c), WARMUP_CALLS)
        result = summarize(time_calls(lambda: service.submit_job("count", {"n": 10}, c), count))
    finally:
        stack.flush_redis()
    tick("submit_job")
    return {"submit_p95_ms": result["p95_ms"], "latency": {"submit_job": result}}
