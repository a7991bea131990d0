"""What a client saw of a job, and the two delays computed from it against the job's own step times.

- step to client (the results' `e2e_latency_ms`, issue 6's "a step being taken to its state arriving
  at the client"): for each step taken while the client watched, the time until the client had that
  step or a later one. This is what a person waits to see a step, sampling delay included.
- publish to client (the results' `e2e_publish_to_client_ms`, issue 4's "a step's publish to the
  state change arriving"): for each state that reached the client, its arrival time minus the time its
  step was taken (the record's `ts`; Jobstream publishes a step's state when it is taken). Coalescing
  and polling skip steps; this is the age of what was delivered.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bench import measure


@dataclass(frozen=True)
class Arrival:
    """A state of the watched job as the client got it: when (Unix seconds), its step, whether it finished."""

    at: float
    step: int
    finished: bool


# A job's step times: (step, finished) -> Unix seconds. The final record repeats the last step.
StepTimes = Mapping[tuple[int, bool], float]


def delivered_ms(arrivals: Sequence[Arrival], times: StepTimes) -> list[float]:
    """Each distinct state's first arrival minus its step's time. The first arrival answers the page's
    own request (not a push, nor a poll on schedule) and is left out."""
    seen: set[tuple[int, bool]] = set()
    delays = []
    for arrival in arrivals[1:]:
        key = (arrival.step, arrival.finished)
        if key not in seen and key in times:
            seen.add(key)
            delays.append((arrival.at - times[key]) * 1000)
    return delays


def step_to_client_ms(arrivals: Sequence[Arrival], times: StepTimes) -> list[float]:
    """For each step taken after the client's first arrival: the wait until it had that step or a later one."""
    if not arrivals:
        return []
    start = arrivals[0].at
    steps = sorted((step, ts) for (step, finished), ts in times.items() if not finished and ts > start)
    delays, i = [], 1
    for step, ts in steps:
        while i < len(arrivals) and arrivals[i].step < step:
            i += 1
        if i == len(arrivals):
            break
        delays.append((arrivals[i].at - ts) * 1000)
    return delays


def job_seconds(times: Iterable[StepTimes]) -> float:
    """The median time the jobs took from their first step to their last."""
    spans = []
    for job in times:
        running = [ts for (_, finished), ts in job.items() if not finished]
        spans.append(max(running) - min(running))
    return statistics.median(spans)


def summarize(clients: Iterable[tuple[Sequence[Arrival], StepTimes]]) -> dict[str, dict[str, float]]:
    """Both delays over every client (each with its job's step times): "step_to_client", "publish_to_client"."""
    delivered: list[float] = []
    shown: list[float] = []
    for arrivals, times in clients:
        delivered += delivered_ms(arrivals, times)
        shown += step_to_client_ms(arrivals, times)
    # Each as p50, p99 and max in milliseconds, and how many delays there were.
    return {
        "step_to_client": measure.summarize(shown, (50, 99), suffix=""),
        "publish_to_client": measure.summarize(delivered, (50, 99), suffix=""),
    }
