"""One Redis subscription per backend process, shared by every page it serves.

Each page's watcher opens a `Subscription` for its jobs; the hub subscribes to a job's channel
while anyone watches it and hands each message to those subscriptions only. After a lost
connection it reconnects with backoff and tells every subscription to re-read its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis
import redis.asyncio as aioredis

from settings import get_settings
from tasks.model import JobState
from tasks.progress import KEY_PREFIX, channel, job_id_of_channel

log = logging.getLogger(__name__)

# A channel nobody publishes to: redis-py can only wait for messages while subscribed to something.
IDLE_CHANNEL = f"{KEY_PREFIX}hub"
RESYNC = None  # put on a queue after a reconnect: "messages may have been missed, re-read"
# Page updates per second one backend process spends at most on the pages it serves. One update
# (state lock, delta, socket.io emit) costs ~0.5 ms of the event loop here (`make bench` prints the
# figure): this is about half of one core, leaving the rest for connects, events and the listener.
PAGE_UPDATES_PER_S = 1000
# How often a watcher asks whether its page still has a socket (Reflex builds a dict to answer).
PRESENCE_CHECK_S = 1.0


class Subscription:
    """One watcher's view of the hub: the jobs it follows and a queue of their new states."""

    def __init__(self, hub: ProgressHub) -> None:
        self.hub = hub
        self.job_ids: set[str] = set()
        self.queue: asyncio.Queue[JobState | None] = asyncio.Queue()

    async def follow(self, job_ids: set[str]) -> None:
        new = job_ids - self.job_ids
        self.job_ids |= new
        await self.hub._follow(self, new)

    async def unfollow(self, job_ids: set[str]) -> None:
        gone = job_ids & self.job_ids
        self.job_ids -= gone
        await self.hub._unfollow(self, gone)

    async def close(self) -> None:
        await self.unfollow(set(self.job_ids))

    def drain(self) -> list[JobState | None]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    async def next_updates(self, timeout_s: float) -> list[JobState | None]:
        """The next update and all queued behind it, to be applied as one; [] after timeout_s."""
        try:
            async with asyncio.timeout(timeout_s):
                first = await self.queue.get()
        except TimeoutError:
            return []
        return [first, *self.drain()]


class ProgressHub:
    """The process's progress listener; `run` is registered as a Reflex lifespan task."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url
        self.app: Any = None
        self._subs: dict[str, set[Subscription]] = {}
        self._watchers: set[Subscription] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self.reconnects = 0

    def subscription(self) -> Subscription:
        return Subscription(self)

    def is_connected(self, client_token: str) -> bool:
        """Whether the page with this token still has a socket open on this process."""
        namespace = getattr(self.app, "event_namespace", None)
        return namespace is not None and client_token in namespace.token_to_sid

    @property
    def channels(self) -> int:
        return len(self._subs)

    def pace_s(self) -> float:
        """How long a watcher waits after updating its page before it takes the next update.

        Each update is a full state round trip for that page. While the pages watching here get
        every coalesced message within PAGE_UPDATES_PER_S, there is no pause; beyond that each
        page's updates are spaced so that all of them together stay within it: the process does a
        bounded amount of work per second instead of falling behind, and what queued up meanwhile
        is applied as one update.
        """
        period_s = len(self._watchers) / PAGE_UPDATES_PER_S
        return period_s if period_s > get_settings().progress_interval_s else 0.0

    async def _follow(self, sub: Subscription, job_ids: set[str]) -> None:
        new = [job_id for job_id in job_ids if job_id not in self._subs]
        for job_id in job_ids:
            self._subs.setdefault(job_id, set()).add(sub)
        if sub.job_ids:
            self._watchers.add(sub)
        if new and self._pubsub is not None:
            # On failure the run loop reconnects and subscribes to every followed job.
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.subscribe(*(channel(job_id) for job_id in new))

    async def _unfollow(self, sub: Subscription, job_ids: set[str]) -> None:
        gone = []
        for job_id in job_ids:
            subs = self._subs.get(job_id, set())
            subs.discard(sub)
            if not subs:
                self._subs.pop(job_id, None)
                gone.append(job_id)
        if not sub.job_ids:
            self._watchers.discard(sub)
        if gone and self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.unsubscribe(*(channel(job_id) for job_id in gone))

    def _dispatch(self, message: dict[str, Any]) -> None:
        subs = self._subs.get(job_id_of_channel(message["channel"].decode()))
        if not subs:
            return
        state = JobState.from_json(message["data"])
        for sub in subs:
            sub.queue.put_nowait(state)

    def _resync(self) -> None:
        for sub in self._watchers:
            sub.queue.put_nowait(RESYNC)

    async def run(self, app: Any) -> None:
        """Listen until cancelled (at shutdown), reconnecting with backoff when Redis goes away."""
        self.app = app
        url = self.redis_url or get_settings().redis_url
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=10)
        backoff = 0.1
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(IDLE_CHANNEL, *(channel(job_id) for job_id in self._subs))
                self._pubsub = pubsub
                if self.reconnects:
                    self._resync()
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message)
            except (redis.RedisError, OSError) as exc:
                log.warning("progress listener lost Redis (%s); reconnecting in %.1fs", exc, backoff)
            finally:
                self._pubsub = None
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.aclose()
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


hub = ProgressHub()
