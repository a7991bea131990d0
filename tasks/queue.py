"""Where a queued job stands: its place in line and an estimate of when it starts.

Celery's queue is the broker's to keep (and a worker may hold a message before it runs it), so
Jobstream keeps its own line: a sorted set of the jobs submitted and not started, by submit time.
A job joins it at submit and leaves it when a worker starts it or it is cancelled; positions are
ranks in it, one Redis call for any number of jobs.

The estimate: every running job frees its worker when its ETA says (its rate so far and the steps
it has left); each job ahead then takes as long as a running job takes on average (elapsed plus
ETA). No estimate while no running job has a known ETA.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, cast

import redis

from tasks import progress
from tasks.model import JobState, JobStatus, QueueFull

# A queued job's place in line (1 is next) and its estimated start in seconds (None: not known).
Place = tuple[int, float | None]
# Sorted set job_id -> submit time of the jobs waiting for a worker.
QUEUE_KEY = f"{progress.KEY_PREFIX}queue"
# Jobs ahead simulated one by one; beyond, the rest is added at the rate of the whole pool.
SIMULATED_MAX = 10_000
# A job still in line this long after its submit is checked for having ended some other way.
STALE_S = 60.0


# Join the line unless it holds ARGV[3] jobs already; with a snapshot (ARGV[4], kept ARGV[5] seconds,
# 0: for good), write it and index the job too. Returns the job's place (1 is next; 0 when the line is
# full, and nothing changed) and the running jobs' ids, from which its start is estimated.
JOIN_UNLESS_FULL = """
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then return {0, {}} end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
if ARGV[4] ~= '' then
  if tonumber(ARGV[5]) > 0 then
    redis.call('set', KEYS[2], ARGV[4], 'EX', ARGV[5])
  else
    redis.call('set', KEYS[2], ARGV[4])
  end
  redis.call('sadd', KEYS[3], ARGV[1])
end
return {redis.call('zrank', KEYS[1], ARGV[1]) + 1, redis.call('hkeys', KEYS[4])}
"""
# When no running job has an estimate, a refused submit is told to come back after this long.
RETRY_AFTER_S = 5


def join(client: redis.Redis, state: JobState, limit: int, keep_s: int | None = None) -> Place:
    """Put the queued job in line, in one round trip; its place and estimated start. With `keep_s`
    (0: for good), its snapshot is written and the job indexed in the same step. QueueFull (nothing
    changed) when `limit` jobs wait already."""
    snapshot, keep = ("", 0) if keep_s is None else (state.to_json(), keep_s)
    keys = (QUEUE_KEY, progress.snapshot_key(state.job_id), progress.INDEX_KEY, progress.RUNNING_KEY)
    joined = client.eval(JOIN_UNLESS_FULL, len(keys), *keys, state.job_id, state.ts, limit, snapshot, keep)
    position, running_ids = cast(list[Any], joined)
    if not position:
        raise QueueFull(limit, retry_after_s(client))
    return position, _starts(client, running_ids, [position])[position]


def retry_after_s(client: redis.Redis) -> int:
    """Whole seconds until the next job should start (a place in line frees up then)."""
    running = _running(client, [raw.decode() for raw in cast(list[bytes], client.hkeys(progress.RUNNING_KEY))])
    soonest = start_estimates(running, [1])[1]
    return RETRY_AFTER_S if soonest is None else max(1, math.ceil(soonest))


def leave(client: redis.Redis | redis.client.Pipeline, *job_ids: str) -> None:
    if job_ids:
        client.zrem(QUEUE_KEY, *job_ids)


def remaining_s(state: JobState, now: float) -> float | None:
    """How long a running job has left at its rate so far, or None when it has not said."""
    elapsed = state.ts - state.started_at if state.started_at else 0.0
    if not state.total or state.step <= 0 or elapsed <= 0:
        return None
    return max((state.total - state.step) * elapsed / state.step - (now - state.ts), 0.0)


def start_estimates(
    running: Sequence[JobState], positions: Iterable[int], now: float | None = None
) -> dict[int, float | None]:
    """Seconds until the job at each position (1 is next) starts, from the running jobs: each of
    their workers is free when its job ends, and every job ahead takes the running jobs' mean
    duration. None for all when no running job has a known ETA."""
    now = time.time() if now is None else now
    known = [(state, left) for state in running if (left := remaining_s(state, now)) is not None]
    wanted = sorted(set(positions))
    if not known or not wanted:
        return dict.fromkeys(wanted)
    mean_s = sum(left + now - (state.started_at or now) for state, left in known) / len(known)
    lefts = [left for _, left in known]
    free = sorted([*lefts, *[sum(lefts) / len(lefts)] * (len(running) - len(known))])
    heapq.heapify(free)
    estimates: dict[int, float | None] = {}
    position = 1
    for wanted_position in wanted:
        while position < min(wanted_position, SIMULATED_MAX):
            heapq.heappush(free, heapq.heappop(free) + mean_s)
            position += 1
        beyond = max(wanted_position - SIMULATED_MAX, 0) * mean_s / len(free)
        estimates[wanted_position] = free[0] + beyond
    return estimates


def places(client: redis.Redis, job_ids: Sequence[str]) -> dict[str, Place]:
    """The place in line (1 is next) and the estimated start (seconds) of those of `job_ids` still
    in line, in one round trip (and one more for the running jobs' snapshots)."""
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.zrank(QUEUE_KEY, job_id)
    pipe.hkeys(progress.RUNNING_KEY)
    *ranks, running_ids = pipe.execute()
    waiting = {job_id: rank + 1 for job_id, rank in zip(job_ids, ranks, strict=True) if rank is not None}
    if not waiting:
        return {}
    starts = _starts(client, running_ids, waiting.values())
    return {job_id: (position, starts[position]) for job_id, position in waiting.items()}


def placed(state: JobState, place: Place | None) -> JobState:
    """A queued job's state with its place (as it is without one)."""
    if place is None or state.status is not JobStatus.QUEUED:
        return state
    return replace(state, queue_position=place[0], starts_in=place[1])


def _starts(client: redis.Redis, running_ids: list[bytes], positions: Iterable[int]) -> dict[int, float | None]:
    """The estimated start of each of these places in line (seconds, rounded), from the running jobs'
    snapshots (one round trip)."""
    running = _running(client, [raw.decode() for raw in running_ids])
    return {position: _rounded(seconds) for position, seconds in start_estimates(running, positions).items()}


def _running(client: redis.Redis, job_ids: list[str]) -> list[JobState]:
    if not job_ids:
        return []
    raws = cast(list[bytes | None], client.mget([progress.snapshot_key(job_id) for job_id in job_ids]))
    states = [JobState.from_json(raw) for raw in raws if raw is not None]
    return [state for state in states if state.status is JobStatus.RUNNING]


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def forget_stale(client: redis.Redis, now: float | None = None) -> list[str]:
    """Take out of line the jobs that ended without a worker starting them (their snapshot is
    finished or gone: a task lost with its broker, a job purged). Returns their ids."""
    now = time.time() if now is None else now
    old = [raw.decode() for raw in cast(list[bytes], client.zrangebyscore(QUEUE_KEY, "-inf", now - STALE_S))]
    if not old:
        return []
    raws = cast(list[bytes | None], client.mget([progress.snapshot_key(job_id) for job_id in old]))
    stale = [
        job_id
        for job_id, raw in zip(old, raws, strict=True)
        if raw is None or json.loads(raw).get("status") != JobStatus.QUEUED.value
    ]
    leave(client, *stale)
    return stale
