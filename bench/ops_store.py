"""The jobs of the console's bench phase (bench.ops): finished jobs as a busy team's history store holds
them, written through the store's own write path (HistoryStore.write of stored_record batches, as the
history consumer writes them) and added to Redis' job index as their submits would have."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench.stack import BenchError, BenchStack
from settings import Settings
from tasks import progress
from tasks.history.store import HistoryStore, StoredRecord, stored_record
from tasks.joblog import job_partition
from tasks.model import JobState, JobStatus

# Finished jobs as a busy team's store holds them: mostly succeeded, some failed, a few cancelled.
STATUS_WEIGHTS = {JobStatus.SUCCEEDED: 14, JobStatus.FAILED: 4, JobStatus.CANCELLED: 2}
OWNERS = 12
# Their starts are spread over this many hours before the run (within JOB_RETENTION_HOURS).
SPREAD_HOURS = 72
# Records written per transaction: the history consumer's BATCH_MAX.
WRITE_BATCH = 5_000


def job_states(count: int, job_types: list[str], now: float, seed: int = 16) -> list[JobState]:
    """`count` finished jobs of every type, several owners and mixed statuses, oldest first: each its first
    record (running, who submitted it and with what) and its final one, as a worker writes them."""
    rng = random.Random(seed)
    owners = [f"t-bench{rng.getrandbits(48):012x}" for _ in range(OWNERS)]
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    states: list[JobState] = []
    for i in range(count):
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        job_type = job_types[i % len(job_types)]
        params, total = job_params(job_type, rng)
        started = now - SPREAD_HOURS * 3600 * (count - i) / count
        ended = started + rng.uniform(0.2, 300)
        status = rng.choices(statuses, weights)[0]
        step = total if status is JobStatus.SUCCEEDED else rng.randint(0, total)
        owner = rng.choice(owners)
        first = JobState(job_id, 0, total, JobStatus.RUNNING, started, job_type=job_type, owner=owner, params=params)
        final = JobState(
            job_id,
            step,
            total,
            status,
            ended,
            job_type=job_type,
            params=params,
            error="ValueError: the bench's failure" if status is JobStatus.FAILED else None,
            result=step if status is JobStatus.SUCCEEDED else None,
        )
        states += [first, final]
    return states


def job_params(job_type: str, rng: random.Random) -> tuple[dict[str, Any], int]:
    """Params of the kind each type takes, and its steps."""
    if job_type == "count":
        n = rng.choice((10, 100, 1_000, 50_000))
        return {"n": n}, n
    if job_type == "primes":
        segments = rng.choice((10, 100, 1_000))
        return {"limit": rng.choice((10**6, 10**7, 10**8)), "segments": segments}, segments
    if job_type == "text_stats":
        return {"text": "the quick brown fox jumps over the lazy dog " * rng.randint(1, 20), "top": 5}, 1
    return {"lines": rng.choice((100, 10_000))}, 1


def stored(settings: Settings, states: list[JobState]) -> Iterator[StoredRecord]:
    """The records as the consumer reads them from the shared layout's topic: each job's records in its
    partition, at the partition's next offsets."""
    offsets: dict[int, int] = {}
    for state in states:
        partition = job_partition(state.job_id, settings.job_log_partitions)
        offset = offsets[partition] = offsets.get(partition, -1) + 1
        record = stored_record(settings.job_log_topic, partition, offset, state.to_json().encode())
        if record is None:
            raise BenchError(f"the store refused job {state.job_id}'s record")
        yield record


def fill(stack: BenchStack, store: HistoryStore, count: int) -> float:
    """Write `count` finished jobs into the store (batches of WRITE_BATCH records, the consumer's path)
    and into Redis' job index; the seconds it took."""
    start = time.perf_counter()
    job_types = sorted(stack.clients.catalog)
    states = job_states(count, job_types, time.time())
    records = list(stored(stack.settings, states))
    for first in range(0, len(records), WRITE_BATCH):
        store.write(records[first : first + WRITE_BATCH])
    pipe = stack.redis.pipeline(transaction=False)
    for state in states[::2]:
        progress.add_to_index(pipe, state.job_id)
    pipe.execute()
    held = len(store.job_ids())
    if held != count:
        raise BenchError(f"the store holds {held} jobs, not the {count} written")
    return time.perf_counter() - start
