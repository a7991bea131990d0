"""The baseline: the demo's way of running and reading a job, measured in the same run as Jobstream.

Per step: one Kafka produce and a flush that waits for it, and one Redis publish on a single
channel that every job shares. A recovery read opens a new Kafka consumer for each request.
"""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.measure import (
    Received,
    Run,
    Subscriber,
    Tick,
    best_run,
    check_job_log,
    peak_per_window,
    repeat_runs,
    series_points,
)
from bench.stack import BenchError, BenchStack
from settings import Settings
from tasks.joblog import topic_name

SHARED_CHANNEL = "jobstream-bench:baseline-progress"


def run_loop(stack: BenchStack, n: int) -> Run:
    """One job of n steps the demo's way; its topic is read back like Jobstream's."""
    job_id = stack.new_job_id(create_topic=True)
    topic = topic_name(stack.settings, job_id)
    producer = Producer({"bootstrap.servers": stack.settings.kafka_bootstrap_servers})
    client = stack.redis
    started_at = time.time()

    def last_of_job(received: Received) -> bool:
        return job_id.encode() in received.data and b'"succeeded"' in received.data

    with Subscriber(stack.settings.redis_url, SHARED_CHANNEL, last_of_job) as subscriber:
        start, cpu_start = time.perf_counter(), time.process_time()
        for step in range(1, n + 1):
            state = {"job_id": job_id, "step": step, "total": n, "status": "running", "started_at": started_at}
            payload = json.dumps(state | {"ts": time.time()})
            producer.produce(topic, payload, job_id)
            producer.flush()
            client.publish(SHARED_CHANNEL, payload)
        final = json.dumps({"job_id": job_id, "step": n, "total": n, "status": "succeeded", "ts": time.time()})
        producer.produce(topic, final, job_id)
        producer.flush()
        client.publish(SHARED_CHANNEL, final)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        subscriber.wait(10)
    check_job_log(stack.settings, topic, n, first_record=False)
    times = [r.at for r in subscriber.received if job_id.encode() in r.data]
    return Run(n, seconds, cpu_seconds, len(times), peak_per_window(times), job_id)


def series(stack: BenchStack, ns: tuple[int, ...], repeats: int, tick: Tick) -> dict[int, list[Run]]:
    """`repeats` baseline runs at each N."""
    return repeat_runs(lambda n: run_loop(stack, n), ns, repeats, tick, "baseline")


def summarize(runs: dict[int, list[Run]]) -> dict[str, Any]:
    """Headline figures from the best run at the largest N, and the series for the plots."""
    headline = best_run(runs[max(runs)])
    return {
        "baseline_throughput_steps_per_s": headline.steps_per_s,
        "baseline_n": headline.n,
        "baseline_redis_msgs_per_s_per_job": headline.redis_msgs_per_s,
        "baseline_series": series_points(runs),
    }


def recovery_read(settings: Settings, topic: str, timeout_s: float = 10.0) -> bytes:
    """The demo's recovery read: a new consumer for this one request, its last record, closed.

    It finds the last record the same way the pooled reader does (read from just before the high
    watermark to the partition's end), so the two differ only in making a consumer per request.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "jobstream-bench-baseline",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout_s)
        consumer.assign([TopicPartition(topic, 0, max(low, high - 1))])
        deadline, last = time.monotonic() + timeout_s, b""
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is None:
                last = msg.value() or b""
            elif error.code() == KafkaError._PARTITION_EOF:
                return last
            else:
                raise BenchError(f"baseline recovery read of {topic}: {error.str()}")
        raise BenchError(f"baseline recovery read of {topic} did not reach the end within {timeout_s:.0f}s")
    finally:
        consumer.close()
