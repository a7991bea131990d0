"""Jobstream's worker loop itself: `tasks.worker.runner.run_job` in this process, at STEP_DELAY_MS=0.

Each run is timed from the call to its return: lease, resume check, every step, the final record,
the flush that waits for the broker to acknowledge all of them, the final publish. The log is then
read back to its end, and a real Redis subscriber counts the job's progress messages.
"""

from __future__ import annotations

import time
from typing import Any

from bench.measure import (
    Run,
    Subscriber,
    Tick,
    best_run,
    check_job_log,
    finished_message,
    peak_per_window,
    repeat_runs,
    series_points,
)
from bench.stack import BenchError, BenchStack
from tasks import progress
from tasks.joblog import topic_name
from tasks.model import JobStatus
from tasks.worker import runner


def run_once(stack: BenchStack, n: int) -> Run:
    """Run one job of n steps through run_job and check its log is complete."""
    job_id = stack.new_job_id()
    step_work = runner.sleep_step(0)
    with Subscriber(stack.settings.redis_url, progress.channel(job_id), finished_message) as subscriber:
        start, cpu_start = time.perf_counter(), time.process_time()
        final = runner.run_job(job_id, n, stack.clients, step_work)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        subscriber.wait(10)
    if final.status is not JobStatus.SUCCEEDED or final.step != n:
        raise BenchError(f"job {job_id} ended {final.status} at step {final.step} of {n}: {final.error}")
    check_job_log(stack.settings, topic_name(stack.settings, job_id), n)
    times = subscriber.times()
    return Run(n, seconds, cpu_seconds, len(times), peak_per_window(times), job_id)


def series(stack: BenchStack, ns: tuple[int, ...], repeats: int, tick: Tick) -> dict[int, list[Run]]:
    """`repeats` runs at each N, after one untimed job that opens the producer's connections."""
    run_once(stack, 1_000)
    return repeat_runs(lambda n: run_once(stack, n), ns, repeats, tick, "jobstream")


def summarize(runs: dict[int, list[Run]]) -> dict[str, Any]:
    """Headline figures from the best run at the largest N, and the series for the plots."""
    headline = best_run(runs[max(runs)])
    return {
        "throughput_steps_per_s": headline.steps_per_s,
        "throughput_steps_per_cpu_s": headline.steps_per_cpu_s,
        "n": headline.n,
        "redis_msgs_per_s_per_job": headline.redis_msgs_per_s,
        "redis_msgs_total": headline.redis_msgs,
        "redis_msgs_peak_per_s": max(r.redis_peak_per_s for rs in runs.values() for r in rs),
        "headline_job_id": headline.job_id,
        "series": series_points(runs),
    }
