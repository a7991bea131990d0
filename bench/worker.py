"""Jobs end to end through a real Celery worker process: submit_job to the `succeeded` message.

A pattern subscription on every job channel starts before the submit, so no message is missed
and the worker's first message (it picked the job up) is timed too.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.measure import Received, Subscriber, Tick, check_job_log
from bench.stack import BenchError, BenchStack
from stack.processes import CeleryWorker, unique_name
from tasks import progress, service
from tasks.joblog import topic_name

JOB_CHANNELS = f"{progress.KEY_PREFIX}progress:*"


def _run(stack: BenchStack, n: int, timeout_s: float) -> dict[str, float]:
    """Submit one job of n steps; milliseconds to its first and to its final message."""
    job: dict[str, str] = {}  # its channel, once submit_job has named the job

    def final(received: Received) -> bool:
        return received.channel == job.get("channel") and b'"succeeded"' in received.data

    with Subscriber(stack.settings.redis_url, JOB_CHANNELS, final, pattern=True) as subscriber:
        start = time.perf_counter()
        state = service.submit_job("count", {"n": n}, stack.clients)
        job["channel"] = progress.channel(state.job_id)
        stack.job_ids.append(state.job_id)
        subscriber.rescan()
        subscriber.wait(timeout_s)
    mine = [r for r in subscriber.received if r.channel == job["channel"]]
    running = [r.at for r in mine if b'"running"' in r.data]
    if not running:
        raise BenchError(f"job {state.job_id} published no running state")
    check_job_log(stack.settings, topic_name(stack.settings, state.job_id), n)
    return {
        "submit_to_succeeded_ms": (mine[-1].at - start) * 1000,
        "submit_to_running_ms": (running[0] - start) * 1000,
    }


def end_to_end(stack: BenchStack, n: int, small_jobs: int, tick: Tick) -> dict[str, Any]:
    """A fresh worker: its first (cold) 1-step job, more 1-step jobs, then one job of n steps."""
    stack.flush_redis()
    start = time.perf_counter()
    worker = CeleryWorker(unique_name("bench", "bench"), stack.log_dir, concurrency=1)
    ready_s = time.perf_counter() - start
    tick("worker started")
    try:
        cold = _run(stack, 1, 60)
        warm = [_run(stack, 1, 60) for _ in range(small_jobs)]
        tick("1-step jobs")
        big = _run(stack, n, 600)
        tick(f"worker job N={n:,}")
    finally:
        worker.stop()
    steps_s = (big["submit_to_succeeded_ms"] - big["submit_to_running_ms"]) / 1000
    return {
        "worker_job_n": n,
        "worker_job_submit_to_succeeded_s": big["submit_to_succeeded_ms"] / 1000,
        "worker_job_steps_per_s": n / steps_s,
        "worker_pickup_ms": big["submit_to_running_ms"],
        "worker_first_small_job_ms": cold["submit_to_succeeded_ms"],
        "worker_small_job_p50_ms": statistics.median(r["submit_to_succeeded_ms"] for r in warm),
        "worker_ready_s": ready_s,
    }
