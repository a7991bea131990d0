"""One Redis subscription per backend process, shared by every page it serves.

Each page (by client token) has one `PageFeed`: the jobs it follows, the states published for them
since its watcher last looked, and its one watcher. The hub subscribes to a job's channel while some
feed follows it and hands each message to those feeds only. It also decides when a watcher takes its
next update (pacing), whether the page is still there (presence), and what to read again after a
lost connection (resync), so a page's watcher only applies what its feed hands it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis

from settings import Settings
from tasks import service
from tasks.clients import clients
from tasks.model import JobNotFound, JobState, JobStatus, ServiceUnavailable
from tasks.progress import KEY_PREFIX, channel, job_id_of_channel

log = logging.getLogger(__name__)

# A channel nobody publishes to: redis-py can only wait for messages while subscribed to something.
IDLE_CHANNEL = f"{KEY_PREFIX}hub"
RESYNC = None  # put on a queue after a reconnect: "messages may have been missed, re-read"
# Page updates per second one backend process spends at most on the pages it serves. One update
# (state lock, delta, socket.io emit) costs 0.3 to 0.5 ms of the event loop on this project's machines
# (`make bench` prints the figure): under half of one core, leaving the rest for connects, events and
# the listener.
PAGE_UPDATES_PER_S = 1000
# How often a watcher asks whether its page still has a socket (Reflex builds a dict to answer).
PRESENCE_CHECK_S = 1.0
# A page that lost its socket gets this long to come back before its watcher ends.
RECONNECT_GRACE_S = 15.0
# How long a watcher waits for news before it checks again that its page is there.
WAIT_S = 1.0
# How often the places in line (and estimated starts) of the queued jobs pages follow are read.
QUEUE_REFRESH_S = 1.0
# A progress update waits at most this long for the status changes handed to other pages before it.
STATUS_FIRST_S = 0.25


async def fetch_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """Current states of these jobs (snapshots, else their logs); unknown ones are left out.
    Raises ServiceUnavailable when neither Redis nor Kafka answers."""

    async def one(job_id: str) -> JobState | None:
        try:
            return await asyncio.to_thread(service.get_job, job_id, clients())
        except JobNotFound:
            return None

    states = await asyncio.gather(*(one(job_id) for job_id in job_ids))
    return {state.job_id: state for state in states if state is not None}


class PageFeed:
    """One page's view of the hub: the jobs it follows, their new states, and its single watcher."""

    def __init__(self, hub: ProgressHub, client_token: str) -> None:
        self.hub = hub
        self.client_token = client_token
        self.job_ids: set[str] = set()
        self.queue: asyncio.Queue[JobState | None] = asyncio.Queue()
        self.watcher: int | None = None  # the claim of the page's watcher, while it has one
        self._claims = 0
        self.gone_since: float | None = None
        self.checked_at = 0.0
        # The status each followed job was last handed to the page with; a change of it is urgent.
        self.statuses: dict[str, JobStatus] = {}
        # Set when the watcher should take its update now: a status change, a resync, or the status
        # changes of other pages it waited behind have gone out.
        self.urgent = asyncio.Event()
        # Whether a status change was handed to the page and its watcher has not taken it yet.
        self.changed = False

    async def follow(self, job_ids: Iterable[str]) -> None:
        self.hub._feeds.setdefault(self.client_token, self)  # forgotten when it last followed nothing
        new = set(job_ids) - self.job_ids
        self.job_ids |= new
        await self.hub._follow(self, new)

    async def unfollow(self, job_ids: Iterable[str]) -> None:
        gone = set(job_ids) & self.job_ids
        self.job_ids -= gone
        for job_id in gone:
            self.statuses.pop(job_id, None)
        await self.hub._unfollow(self, gone)

    def claim(self) -> int | None:
        """Become the page's watcher: a claim to hand back to `release`; None when the page has a
        watcher already (a second one would only repeat the first's work)."""
        if self.watcher is not None:
            return None
        self._claims += 1
        self.watcher = self._claims
        self.hub._watched(self)
        return self.watcher

    async def release(self, claim: int) -> None:
        """The watcher with this claim ends (a later one keeps its own): a page that has gone stops
        following its jobs, and a feed that follows nothing is forgotten."""
        if self.watcher == claim:
            self.watcher = None
            self.hub._sent(self)
        if self.watcher is None and not self.hub.is_connected(self.client_token):
            await self.unfollow(set(self.job_ids))
        if self.watcher is None and not self.job_ids and self.hub._feeds.get(self.client_token) is self:
            del self.hub._feeds[self.client_token]

    def gone(self) -> bool:
        """Whether the page has had no socket for RECONNECT_GRACE_S (asked at most every
        PRESENCE_CHECK_S: a watcher asks on each update of its page)."""
        now = time.monotonic()
        if now - self.checked_at < PRESENCE_CHECK_S:
            return False
        self.checked_at = now
        if self.hub.is_connected(self.client_token):
            self.gone_since = None
            return False
        if self.gone_since is None:
            self.gone_since = now
        return now - self.gone_since > RECONNECT_GRACE_S

    async def until_urgent(self, timeout_s: float) -> None:
        """Wait until the watcher should take its update now, or `timeout_s` at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.urgent.wait()

    def _drain(self) -> list[JobState | None]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    async def next_states(self) -> list[JobState] | None:
        """The states to apply next, all that queued up, as one update; None once the page has gone.

        Paced (see ProgressHub.pace_s), but a change of a job's status (it starts, ends, fails, is
        cancelled) ends the pause at once: pacing spaces out progress, never what a person waits
        for. An empty list after WAIT_S without news. After the hub lost its connection, the
        followed jobs are read again: messages may have been missed meanwhile.
        """
        self.hub._sent(self)  # the watcher asks again: what it took last has gone to the page
        if self.gone():
            return None
        if pause_s := self.hub.pace_s():
            await self.until_urgent(pause_s)
        await self.hub._after_status_changes(self)
        self.urgent.clear()  # before the queue is read: a change handed after it is seen next time
        updates = self._drain()
        if not updates:
            try:
                async with asyncio.timeout(WAIT_S):
                    updates = [await self.queue.get(), *self._drain()]
            except TimeoutError:
                return []
        self.hub._took(self)
        states = [update for update in updates if update is not RESYNC]
        if RESYNC in updates:
            states += (await fetch_states(self.job_ids)).values()
        return states


class ProgressHub:
    """The process's progress listener; `run` is registered as a Reflex lifespan task."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self.app: Any = None
        self._feeds: dict[str, PageFeed] = {}
        self._subs: dict[str, set[PageFeed]] = {}
        self._watching: set[PageFeed] = set()
        # Feeds with an update their watcher has not taken yet: the pages pacing is shared among.
        self._due: set[PageFeed] = set()
        # Status changes go to the pages ahead of progress: feeds (with a watcher) handed a status
        # change their watcher has not taken yet, those whose watcher took one and is sending it,
        # and the feeds whose progress waits until both sets are empty.
        self._changed: set[PageFeed] = set()
        self._sending: set[PageFeed] = set()
        self._held: set[PageFeed] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self.reconnects = 0
        # Followed jobs seen out of line (started, or never queued here): their places are not read.
        self._started: set[str] = set()
        # What pages were last told of each queued job: its place, and its estimated start.
        self._places: dict[str, tuple[int | None, float | None]] = {}

    @functools.cached_property
    def settings(self) -> Settings:
        """The settings it was made with, else the process's."""
        return self._settings or clients().settings

    def feed(self, client_token: str) -> PageFeed:
        """The page's feed, made on first use."""
        feed = self._feeds.get(client_token)
        if feed is None:
            feed = self._feeds[client_token] = PageFeed(self, client_token)
        return feed

    def is_connected(self, client_token: str) -> bool:
        """Whether the page with this token still has a socket open on this process."""
        namespace = getattr(self.app, "event_namespace", None)
        return namespace is not None and client_token in namespace.token_to_sid

    @property
    def channels(self) -> int:
        return len(self._subs)

    @property
    def pages(self) -> int:
        return len(self._feeds)

    def pace_s(self) -> float:
        """How long a watcher waits after updating its page before it takes the next update.

        Each update is a full state round trip for that page. While the pages watching here get
        every coalesced message within PAGE_UPDATES_PER_S, there is no pause; beyond that each
        page's updates are spaced so that all of them together stay within it: the process does a
        bounded amount of work per second instead of falling behind, and what queued up meanwhile
        is applied as one update. Only pages with an update due count: a page whose jobs say
        nothing (or a socket that follows a job and never reads) slows no one else's updates.
        """
        period_s = len(self._due) / PAGE_UPDATES_PER_S
        return period_s if period_s > self.settings.progress_interval_s else 0.0

    async def _follow(self, feed: PageFeed, job_ids: set[str]) -> None:
        new = [job_id for job_id in job_ids if job_id not in self._subs]
        for job_id in job_ids:
            self._subs.setdefault(job_id, set()).add(feed)
        if feed.job_ids:
            self._watching.add(feed)
        if new and self._pubsub is not None:
            # On failure the run loop reconnects and subscribes to every followed job.
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.subscribe(*(channel(job_id) for job_id in new))

    async def _unfollow(self, feed: PageFeed, job_ids: set[str]) -> None:
        gone = []
        for job_id in job_ids:
            feeds = self._subs.get(job_id, set())
            feeds.discard(feed)
            if not feeds:
                self._subs.pop(job_id, None)
                self._started.discard(job_id)
                self._places.pop(job_id, None)
                gone.append(job_id)
        if not feed.job_ids:
            self._watching.discard(feed)
            self._due.discard(feed)
            self._sent(feed)
        if gone and self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.unsubscribe(*(channel(job_id) for job_id in gone))

    def _dispatch(self, message: dict[str, Any]) -> None:
        feeds = self._subs.get(job_id_of_channel(message["channel"].decode()))
        if not feeds:
            return
        state = JobState.from_json(message["data"])
        if state.status is not JobStatus.QUEUED:
            self._started.add(state.job_id)
        self._hand(feeds, state)

    def _hand(self, feeds: Iterable[PageFeed], update: JobState | None) -> None:
        for feed in feeds:
            feed.queue.put_nowait(update)
            self._due.add(feed)
            if update is RESYNC:
                feed.urgent.set()
            elif feed.statuses.get(update.job_id) is not update.status:
                feed.statuses[update.job_id] = update.status
                feed.urgent.set()
                feed.changed = True
                if feed.watcher is not None:
                    self._changed.add(feed)

    def status_changes_pending(self) -> bool:
        """Whether a status change handed to some page has not gone to it yet."""
        return bool(self._changed or self._sending)

    def _watched(self, feed: PageFeed) -> None:
        """The feed has a watcher now: a status change handed to it before goes ahead of the other
        pages' progress, as one handed from now on does."""
        if feed.changed:
            self._changed.add(feed)

    async def _after_status_changes(self, feed: PageFeed) -> None:
        """A watcher about to take progress waits (at most STATUS_FIRST_S) until the status changes
        handed to other pages have gone to them; one taking a status change of its own goes at once."""
        if self.status_changes_pending() and feed not in self._changed:
            self._held.add(feed)
            await feed.until_urgent(STATUS_FIRST_S)
            self._held.discard(feed)

    def _took(self, feed: PageFeed) -> None:
        """The feed's watcher took its update: nothing is due for it any more, and the status
        change in it, if any, is being sent."""
        self._due.discard(feed)
        feed.changed = False
        if feed in self._changed:
            self._changed.discard(feed)
            self._sending.add(feed)

    def _sent(self, feed: PageFeed) -> None:
        """The feed's watcher sent what it took, or it has no watcher (its page has gone or follows
        nothing more): progress held behind it may go."""
        self._sending.discard(feed)
        if feed.watcher is None or not feed.job_ids:
            self._changed.discard(feed)
        if self._held and not self.status_changes_pending():
            for held in self._held:
                held.urgent.set()

    async def refresh_places(self) -> None:
        """Hand the pages the new place in line (or estimated start) of each queued job they
        follow: one Redis round trip for all of them, whatever the number of pages. The update
        holds the place only (a queued job's card changes nothing else)."""
        job_ids = [job_id for job_id in self._subs if job_id not in self._started]
        if not job_ids:
            return
        try:
            places = await asyncio.to_thread(service.places, job_ids, clients())
        except ServiceUnavailable:
            return
        now = time.time()
        for job_id in job_ids:
            place = places.get(job_id)
            if place is None:  # out of line: started, cancelled, or never queued
                self._started.add(job_id)
                continue
            shown = (place[0], None if place[1] is None else round(place[1]))
            if self._places.get(job_id) != shown:
                self._places[job_id] = shown
                update = JobState(job_id, 0, 0, JobStatus.QUEUED, now, queue_position=place[0], starts_in=place[1])
                self._hand(self._subs.get(job_id, ()), update)

    async def _refresh_places_forever(self) -> None:
        while True:
            await asyncio.sleep(QUEUE_REFRESH_S)
            try:
                await self.refresh_places()
            except Exception:  # a bug here must not end the listener
                log.exception("reading the places in line failed")

    def _resync(self) -> None:
        self._hand(list(self._watching), RESYNC)

    async def run(self, app: Any) -> None:
        """Listen until cancelled (at shutdown), reconnecting with backoff when Redis goes away."""
        self.app = app
        client = aioredis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2, health_check_interval=10)
        places = asyncio.create_task(self._refresh_places_forever())
        try:
            await self._listen(client)
        finally:
            places.cancel()

    async def _listen(self, client: aioredis.Redis) -> None:
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
