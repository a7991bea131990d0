"""The worker loop as it was before job types, kept as the bench's reference for the catalog path.

A copy of the seed's hand-written count loop (tasks/worker/runner.py before job types): lease,
topic, one hand-formatted record per step, coalesced progress with the cancel check, the final
record, the flush. `make bench` runs it beside `runner.run_job(..., "count", ...)` in the same
run and prints the catalog path's throughput as a ratio of this one's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks import progress
from tasks.clients import Clients
from tasks.joblog import log_place
from tasks.model import JobState, JobStatus


def run_count(job_id: str, total: int, c: Clients) -> JobState:
    """Count to `total` with no work per step, as the seed's runner did."""
    lease = progress.Lease(c.redis, job_id)
    if not lease.acquire():
        raise RuntimeError(f"job {job_id} is leased already")
    publisher = progress.ProgressPublisher(c.redis, c.settings, job_id, lease)
    try:
        c.admin.create(job_id)
        place = log_place(c.settings, job_id)
        c.writer.begin(place)
        final = _steps(job_id, total, time.time(), c, lambda step: None, publisher)
        c.writer.append(place, job_id, final.to_json())
        c.writer.flush()
        publisher.publish_final(final)
        return final
    finally:
        lease.release()


def _steps(
    job_id: str,
    total: int,
    started_at: float,
    c: Clients,
    step_work: Callable[[int], None],
    publisher: progress.ProgressPublisher,
) -> JobState:
    """The seed's hot loop, unchanged."""
    publisher.publish(JobState(job_id, 0, total, JobStatus.RUNNING, time.time(), started_at))
    place = log_place(c.settings, job_id)
    head = f'{{"job_id":"{job_id}","total":{total},"status":"running","started_at":{started_at!r},"step":'
    append, writer, now, clock = c.writer.append, c.writer, time.time, time.monotonic
    for step in range(1, total + 1):
        step_work(step)
        ts = now()
        append(place, job_id, f'{head}{step},"ts":{ts!r}}}')
        if not step & 1023:
            writer.poll()
            writer.raise_on_error()
        if clock() >= publisher.next_due and publisher.publish(
            JobState(job_id, step, total, JobStatus.RUNNING, ts, started_at)
        ):
            return JobState(job_id, step, total, JobStatus.CANCELLED, now(), started_at)
    return JobState(job_id, total, total, JobStatus.SUCCEEDED, now(), started_at)
