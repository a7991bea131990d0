"""Jobstream's worker loop itself: `tasks.worker.runner.run_job` in this process, at STEP_DELAY_MS=0,
running the catalog's count job, and beside it the seed's hand-written loop (bench.handloop).

Each run is timed from the call to its return: lease, resume check, every step, the final record,
the flush that waits for the broker to acknowledge all of them, the final publish. The log is then
read back to its end, and a real Redis subscriber counts the job's progress messages.
"""

from __future__ import annotations

import time
from typing import Any

from bench import handloop
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


def run_once(stack: BenchStack, n: int, hand_loop: bool = False) -> Run:
    """Run one count job of n steps (through the catalog, or the seed's loop) and check its log."""
    job_id = stack.new_job_id()
    with Subscriber(stack.settings.redis_url, progress.channel(job_id), finished_message) as subscriber:
        start, cpu_start = time.perf_counter(), time.process_time()
        if hand_loop:
            final = handloop.run_count(job_id, n, stack.clients)
        else:
            final = runner.run_job(job_id, "count", {"n": n}, stack.clients)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        subscriber.wait(10)
    if final.status is not JobStatus.SUCCEEDED or final.step != n:
        raise BenchError(f"job {job_id} ended {final.status} at step {final.step} of {n}: {final.error}")
    check_job_log(stack.settings, topic_name(stack.settings, job_id), n, first_record=not hand_loop)
    times = subscriber.times()
    return Run(n, seconds, cpu_seconds, len(times), peak_per_window(times), job_id)


def series(stack: BenchStack, ns: tuple[int, ...], repeats: int, tick: Tick) -> dict[int, list[Run]]:
    """`repeats` runs at each N, after one untimed job that opens the producer's connections."""
    run_once(stack, 1_000)
    return repeat_runs(lambda n: run_once(stack, n), ns, repeats, tick, "jobstream")


def hand_loop_runs(stack: BenchStack, n: int, repeats: int, tick: Tick) -> dict[str, Any]:
    """The catalog path against the seed's hand-written loop at one N, alternating so that both
    see the same machine: their best throughputs, and the catalog's as a ratio of the loop's."""
    catalog: list[Run] = []
    hand: list[Run] = []
    for attempt in range(repeats):
        hand.append(run_once(stack, n, hand_loop=True))
        catalog.append(run_once(stack, n))
        tick(f"catalog vs hand loop N={n:,} #{attempt + 1}")
    catalog_best, hand_best = best_run(catalog).steps_per_s, best_run(hand).steps_per_s
    return {
        "catalog_throughput_steps_per_s": catalog_best,
        "hand_loop_throughput_steps_per_s": hand_best,
        "catalog_vs_hand_loop": catalog_best / hand_best,
    }


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
