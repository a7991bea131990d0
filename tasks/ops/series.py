"""Per-minute figures in Redis for the console's charts: steps done across all jobs, and the queue's
depth. Bounded: one key per figure and minute, made to expire (EXPIREAT) KEEP_MINUTES after its
minute began, so at most KEEP_MINUTES + 1 keys of each figure exist whatever the load; a figure for
a minute already past its keep is dropped at once (Redis deletes a key whose EXPIREAT has passed).
"""

from __future__ import annotations

import time
from typing import cast

import redis

SERIES_PREFIX = "jobstream:ops:series:"
STEPS = "steps"
QUEUE = "queue"
# What a chart can show: the last hour, minute by minute.
KEEP_MINUTES = 60

# KEYS: the minute's key. ARGV: the value, the expiry (epoch s). Keeps the larger of the two.
KEEP_MAX = """
local old = tonumber(redis.call('get', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > old then redis.call('set', KEYS[1], ARGV[1]) end
redis.call('expireat', KEYS[1], ARGV[2])
return 1
"""


def minute_of(ts: float) -> int:
    """The start (epoch s) of the minute `ts` is in."""
    return int(ts // 60) * 60


def key(figure: str, minute: int) -> str:
    return f"{SERIES_PREFIX}{figure}:{minute}"


def expires_at(minute: int) -> int:
    return minute + (KEEP_MINUTES + 1) * 60


def count_steps(client: redis.Redis | redis.client.Pipeline, steps: int, now: float | None = None) -> None:
    """Add `steps` to the current minute's steps (queued on a pipeline when given one)."""
    minute = minute_of(time.time() if now is None else now)
    client.incrby(key(STEPS, minute), steps)
    client.expireat(key(STEPS, minute), expires_at(minute))


def note_queue_depth(client: redis.Redis, depth: int, now: float | None = None) -> None:
    """Keep the deepest the queue was seen in the current minute."""
    minute = minute_of(time.time() if now is None else now)
    client.eval(KEEP_MAX, 1, key(QUEUE, minute), depth, expires_at(minute))


def read(client: redis.Redis, figure: str, minutes: int, now: float | None = None) -> list[tuple[int, int | None]]:
    """The last `minutes` minutes of a figure, oldest first, the current minute last: (minute, value),
    None where nothing was recorded. One round trip."""
    minutes = max(1, min(minutes, KEEP_MINUTES))
    current = minute_of(time.time() if now is None else now)
    starts = [current - 60 * back for back in range(minutes - 1, -1, -1)]
    raws = cast(list[bytes | None], client.mget([key(figure, minute) for minute in starts]))
    return [(minute, None if raw is None else int(raw)) for minute, raw in zip(starts, raws, strict=True)]


def per_second(steps: int | None, minute: int, now: float) -> float:
    """Steps a second over a minute (the current one: over the part of it gone by)."""
    if not steps:
        return 0.0
    return round(steps / min(60.0, max(1.0, now - minute)), 3)
