"""The console's charts, minute by minute over the last hour at most: jobs that ended by status (the
history store), steps a second across all jobs and the queue's depth (Redis's bounded series,
tasks.ops.series: the store keeps neither)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tasks import queue, service
from tasks.clients import Clients
from tasks.model import FINISHED, InvalidInput
from tasks.ops import series

MAX_MINUTES = series.KEEP_MINUTES


@dataclass(frozen=True)
class Minute:
    """One minute of the charts; `minute` is its start (epoch s). The current minute is the last,
    its figures so far."""

    minute: int
    finished: dict[str, int]
    steps_per_s: float
    queue_depth: int | None


@service.reaching_services
def stats(c: Clients, minutes: int = 60, now: float | None = None) -> list[Minute]:
    """The last `minutes` minutes (1 to MAX_MINUTES), oldest first. `queue_depth` is the deepest the
    workers saw the queue in that minute (None when no worker was up), the current minute's at least
    its depth now."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidInput(f"minutes must be between 1 and {MAX_MINUTES}")
    now = time.time() if now is None else now
    steps = series.read(c.redis, series.STEPS, minutes, now)
    depths = series.read(c.redis, series.QUEUE, minutes, now)
    finished = c.history.finished_per_minute(steps[0][0])
    depth_now = int(c.redis.zcard(queue.QUEUE_KEY))  # type: ignore[arg-type]
    statuses = sorted(status.value for status in FINISHED)
    points = []
    for (minute, done), (_, seen) in zip(steps, depths, strict=True):
        depth = max(seen or 0, depth_now) if minute == steps[-1][0] else seen
        counts = finished.get(minute, {})
        points.append(
            Minute(
                minute=minute,
                finished={status: counts.get(status, 0) for status in statuses},
                steps_per_s=series.per_second(done, minute, now),
                queue_depth=depth,
            )
        )
    return points
