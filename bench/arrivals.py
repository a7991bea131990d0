"""What a client saw of a job, and the two delays computed from it against the job's own step times.

- step to client (the results' `e2e_latency_ms`, issue 6's "a step being taken to its state arriving
  at the client"): for each step taken while the client watched, the time until the client had that
  step or a later one. This is what a person waits to see a step, sampling delay included.
- publish to client (the results' `e2e_publish_to_client_ms`, issue 4's "a step's publish to the
  state change arriving"): for each state that reached the client, its arrival time minus the time its
  step was taken (the record's `ts`; Jobstream publishes a step's state when it is taken). Coalescing
  and polling skip steps; this is the age of what was delivered.
- status change to client (the results' `e2e_status_change_ms`, issue 17's "status changes are never
  paced"): the first arrival of the job's final status minus its final record's time: what a person
  waits to see a job end, which pacing must not delay.
- updates per second (the results' `e2e_min_updates_per_s`, issue 17's smoothness): how often the
  page got a new step of its running job, over the job's run, for the page that got the fewest.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def status_change_ms(arrivals: Sequence[Arrival], times: StepTimes) -> list[float]:
    """The job's end reaching the client: its first finished arrival minus its final record's time;
    nothing when the client's first arrival was already the end (its own read, not a push)."""
    ended = [ts for (_, finished), ts in times.items() if finished]
    first = next((i for i, arrival in enumerate(arrivals) if arrival.finished), None)
    if not ended or not first:
        return []
    return [(arrivals[first].at - ended[0]) * 1000]


def updates_per_s(arrivals: Sequence[Arrival], times: StepTimes) -> float | None:
    """New steps the client got per second while the job ran (after its first arrival)."""
    running = [ts for (_, finished), ts in times.items() if not finished]
    if not arrivals or not running:
        return None
    start, end = max(arrivals[0].at, min(running)), max(running)
    new_steps = {a.step for a in arrivals[1:] if start < a.at <= end and not a.finished}
    return len(new_steps) / (end - start) if end - start >= 1.0 else None


def spread(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of samples, one sample being all three (a single page's one job end)."""
    if len(samples_ms) == 1:
        return {"p50": samples_ms[0], "p99": samples_ms[0], "max": samples_ms[0], "samples": 1}
    return measure.summarize(samples_ms, (50, 99), suffix="")


def job_seconds(times: Iterable[StepTimes]) -> float:
    """The median time the jobs took from their first step to their last."""
    spans = []
    for job in times:
        running = [ts for (_, finished), ts in job.items() if not finished]
        spans.append(max(running) - min(running))
    return statistics.median(spans)


def summarize(clients: Iterable[tuple[Sequence[Arrival], StepTimes]]) -> dict[str, Any]:
    """The delays over every client (each with its job's step times): "step_to_client",
    "publish_to_client", "status_change"; and "min_updates_per_s", the fewest updates a second a
    client got of its running job (None when no job ran for a second)."""
    delivered: list[float] = []
    shown: list[float] = []
    changes: list[float] = []
    rates: list[float] = []
    for arrivals, times in clients:
        delivered += delivered_ms(arrivals, times)
        shown += step_to_client_ms(arrivals, times)
        changes += status_change_ms(arrivals, times)
        if (rate := updates_per_s(arrivals, times)) is not None:
            rates.append(rate)
    # Each as p50, p99 and max in milliseconds, and how many delays there were.
    return {
        "step_to_client": measure.summarize(shown, (50, 99), suffix=""),
        "publish_to_client": measure.summarize(delivered, (50, 99), suffix=""),
        "status_change": spread(changes) if changes else None,
        "min_updates_per_s": min(rates) if rates else None,
    }
