"""Log lines: a job that prints as fast as it can (bench.jobs.shout), through
`tasks.worker.runner.run_job` in this process, as the pipeline bench runs the count job.

Its lines per second into Kafka (every line acknowledged by the broker before the job ends) are
set against the count job's steps per second from the same run; its progress messages per second
(besides the run's first and final ones) against the coalescing bound, one per
PROGRESS_INTERVAL_MS: what a page following the job receives however much it prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.jobs import shout_line
from bench.measure import Subscriber, Tick, finished_message, peak_per_window
from bench.stack import BenchError, BenchStack
from tasks import progress
from tasks.model import JobStatus, LineKind, LogLine
from tasks.worker import runner


@dataclass(frozen=True)
class LinesRun:
    lines: int
    seconds: float
    redis_msgs: int
    redis_peak_per_s: int

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds


def run_once(stack: BenchStack, lines: int) -> LinesRun:
    """One job printing `lines` lines; checks that its log holds every one of them."""
    job_id = stack.new_job_id()
    with Subscriber(stack.settings.redis_url, progress.channel(job_id), finished_message) as subscriber:
        start = time.perf_counter()
        final = runner.run_job(job_id, "shout", {"lines": lines}, stack.clients)
        seconds = time.perf_counter() - start
        subscriber.wait(10)
    if final.status is not JobStatus.SUCCEEDED:
        raise BenchError(f"job {job_id} ended {final.status}: {final.error}")
    records = stack.clients.reader.records(job_id, frozenset({LineKind.LOG}))
    kept = [r.message for r in records if isinstance(r, LogLine)]
    if len(kept) != lines or kept[-1] != shout_line(lines, lines):
        raise BenchError(f"job {job_id}: {len(kept)} lines in its log instead of {lines}")
    times = subscriber.times()
    # The run's first state and its final one are sent as they happen; the rest are coalesced.
    return LinesRun(lines, seconds, len(times) - 2, peak_per_window(times))


def run(stack: BenchStack, lines: int, repeats: int, tick: Tick) -> dict[str, Any]:
    """The best of `repeats` runs (after one small untimed one), with its progress traffic."""
    run_once(stack, 1_000)
    runs = []
    for attempt in range(repeats):
        runs.append(run_once(stack, lines))
        tick(f"log lines N={lines:,} #{attempt + 1}")
    best = max(runs, key=lambda r: r.lines_per_s)
    bound = 1 / stack.settings.progress_interval_s
    return {
        "log_lines": lines,
        "log_lines_per_s": best.lines_per_s,
        "log_lines_seconds": best.seconds,
        "log_lines_redis_msgs_per_s": best.redis_msgs / best.seconds,
        "log_lines_redis_peak_per_s": max(r.redis_peak_per_s for r in runs),
        "coalescing_bound_msgs_per_s": bound,
    }
