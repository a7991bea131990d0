"""Job progress in Redis: a snapshot key and a channel per job, a cancel flag and a run lease.

Redis only holds what the job's Kafka log can rebuild (plus the short-lived flag and lease), so
losing Redis loses no history. Names are built only from checked job ids.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import cast

import redis

from settings import Settings
from tasks.model import JobNotFound, JobState, JobStatus, check_job_id
from tasks.ops import series

log = logging.getLogger(__name__)

KEY_PREFIX = "jobstream:"
# A job's runner renews its lease at every progress publish; a runner that died loses it after
# this long, and the stalled-job check hands the job to another worker.
LEASE_MS = 10_000
# Sorted set job_id -> when retention condemned it; its topic is deleted a grace period later.
PURGING_KEY = f"{KEY_PREFIX}purging"
# Hash job_id -> total of the jobs a runner has started and not finished.
RUNNING_KEY = f"{KEY_PREFIX}running"
# Set of every job id submitted or started and not yet purged: an id outside it is not found,
# without a question to Kafka (see load). INDEX_COMPLETE_KEY says the set holds every job: it is
# gone with the rest of Redis's data, until the set is rebuilt from the topics (service.rebuild_index).
INDEX_KEY = f"{KEY_PREFIX}jobs"
INDEX_COMPLETE_KEY = f"{KEY_PREFIX}jobs:complete"
# Keep the lease if it is ours (or lapsed and free); report 0 if another runner took it.
RENEW_LEASE = """
local holder = redis.call('get', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
return 1
"""
# A run's end: if the lease is ours (or lapsed and free), release it and take the job off the running
# jobs; report 0 if another runner took it.
END_RUN = """
local holder = redis.call('get', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
redis.call('hdel', KEYS[2], ARGV[2])
return 1
"""


SNAPSHOT_PREFIX = f"{KEY_PREFIX}job:"


def snapshot_key(job_id: str) -> str:
    return SNAPSHOT_PREFIX + check_job_id(job_id)


def channel(job_id: str) -> str:
    return f"{KEY_PREFIX}progress:{check_job_id(job_id)}"


def params_key(job_id: str) -> str:
    """The job's params while it runs (its progress messages leave them out; see load)."""
    return f"{KEY_PREFIX}params:{check_job_id(job_id)}"


def owned_by_key(job_id: str) -> str:
    """Who owns the job (see tasks.owners), for its whole retention: its progress messages leave it out."""
    return f"{KEY_PREFIX}owned-by:{check_job_id(job_id)}"


def cancel_key(job_id: str) -> str:
    return f"{KEY_PREFIX}cancel:{check_job_id(job_id)}"


def lease_key(job_id: str) -> str:
    return f"{KEY_PREFIX}lease:{check_job_id(job_id)}"


def gone_key(job_id: str) -> str:
    """Set when retention condemns a job: from then on it is not found, and its log is not read."""
    return f"{KEY_PREFIX}gone:{check_job_id(job_id)}"


def requeued_key(job_id: str) -> str:
    return f"{KEY_PREFIX}requeued:{check_job_id(job_id)}"


def log_start_key(job_id: str) -> str:
    """Shared log layout: an offset of the job's partition at or before its first record (see
    JobLogReader.starts), set when a worker first starts it."""
    return f"{KEY_PREFIX}log-start:{check_job_id(job_id)}"


def mark_log_start(client: redis.Redis, settings: Settings, job_id: str, offset: int, replace: bool = False) -> bool:
    """Keep where the job's log begins, unless an earlier run already did (or `replace`); True when
    this call set it."""
    return bool(client.set(log_start_key(job_id), offset, nx=not replace, ex=settings.retention_s or None))


def mark_log_start_queued(client: redis.Redis, settings: Settings, job_id: str, offset: int) -> tuple[bool, bool]:
    """Mark where the job's log begins, unless an earlier run did. Whether this call marked it, and
    whether the job's snapshot is still the queued one: both mean no earlier run began (one marks
    first, then says so), unless Redis lost its data."""
    pipe = client.pipeline(transaction=False)
    pipe.set(log_start_key(job_id), offset, nx=True, ex=settings.retention_s or None)
    pipe.get(snapshot_key(job_id))
    marked, raw = pipe.execute()
    return bool(marked), raw is not None and JobState.from_json(raw).status is JobStatus.QUEUED


def log_start(client: redis.Redis, job_id: str) -> int | None:
    raw = cast(bytes | None, client.get(log_start_key(job_id)))
    return None if raw is None else int(raw)


def job_id_of_channel(name: str) -> str:
    return name.removeprefix(f"{KEY_PREFIX}progress:")


def connect(settings: Settings) -> redis.Redis:
    """A client that fails fast when Redis is down, so a job never waits on progress."""
    # One connection per process, shared by its threads: a Redis round trip takes well under a
    # millisecond, and the web process's connections then stay the same however many pages it
    # serves (an unbounded pool opens one per concurrent thread).
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=1,
        timeout=5,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


def queue_store(pipe: redis.client.Pipeline, settings: Settings, state: JobState) -> None:
    """Add 'write the snapshot, publish it on the job's channel' to a pipeline."""
    payload = state.to_json()
    pipe.set(snapshot_key(state.job_id), payload, ex=settings.retention_s or None)
    pipe.publish(channel(state.job_id), payload)


def store(client: redis.Redis, settings: Settings, state: JobState) -> None:
    """Write a job's snapshot and publish it, in one round trip."""
    pipe = client.pipeline(transaction=False)
    queue_store(pipe, settings, state)
    pipe.execute()


def add_to_index(client: redis.Redis | redis.client.Pipeline, job_id: str) -> None:
    client.sadd(INDEX_KEY, check_job_id(job_id))


def refill(client: redis.Redis, settings: Settings, state: JobState) -> None:
    """Put back a snapshot rebuilt from Kafka, unless a fresher one arrived meanwhile."""
    client.set(snapshot_key(state.job_id), state.to_json(), ex=settings.retention_s or None, nx=True)


def load(client: redis.Redis, job_id: str, indexed: bool = True) -> JobState | None:
    """The job's snapshot, with its params; None when Redis has none (its log may: ask it); JobNotFound
    once retention has condemned the job, or (with `indexed`) when the complete index lacks it.

    A queued or finished job's snapshot holds its params; a running job's progress messages do
    not (they go to every page that follows it), so its params are kept beside it. Its owner is
    kept beside it for its whole retention."""
    pipe = client.pipeline(transaction=False)
    pipe.get(snapshot_key(job_id))
    pipe.get(params_key(job_id))
    pipe.get(owned_by_key(job_id))
    pipe.exists(gone_key(job_id))
    pipe.sismember(INDEX_KEY, job_id)
    pipe.exists(INDEX_COMPLETE_KEY)
    raw, raw_params, raw_owner, gone, indexed_here, index_complete = pipe.execute()
    if gone:
        raise JobNotFound("no such job")
    if raw is None:
        if indexed and index_complete and not indexed_here:
            raise JobNotFound("no such job")
        return None
    state = JobState.from_json(raw)
    if state.params is None and raw_params is not None:
        state = replace(state, params=json.loads(raw_params))
    if state.owner is None and raw_owner is not None:
        state = replace(state, owner=raw_owner.decode())
    return state


def keep_owner(client: redis.Redis | redis.client.Pipeline, settings: Settings, job_id: str, owner: str) -> None:
    client.set(owned_by_key(job_id), owner, ex=settings.retention_s or None)


RELEASE_LEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass
class Lease:
    """Who runs a job: one holder at a time, renewed while it runs, expiring if the holder dies."""

    client: redis.Redis
    job_id: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def acquire(self) -> bool:
        return bool(self.client.set(lease_key(self.job_id), self.token, nx=True, px=LEASE_MS))

    def wait(self, timeout_s: float) -> bool:
        """Acquire, waiting up to timeout_s for a holder that died to let its lease expire."""
        deadline = time.monotonic() + timeout_s
        while not self.acquire():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def release(self, pipe: redis.client.Pipeline | None = None) -> None:
        """Delete the lease if it is still ours (compare and delete in one step); in `pipe` when given."""
        (pipe or self.client).eval(RELEASE_LEASE, 1, lease_key(self.job_id), self.token)


def end_run(pipe: redis.client.Pipeline, lease: Lease) -> None:
    """Add 'release the lease if it is still ours, and take the job off the running jobs' to `pipe`."""
    pipe.eval(END_RUN, 2, lease_key(lease.job_id), RUNNING_KEY, lease.token, lease.job_id)


class LeaseLost(RuntimeError):
    """Another runner holds this job's lease: this one must stop writing at once."""


class ProgressPublisher:
    """Publishes one job's progress, coalesced: at most one message per interval, always the last.

    Each publish also renews the job's lease and reads its cancel flag, in the same round trip.
    When Redis is unreachable the job goes on: publishing backs off and resumes when Redis is back.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        job_id: str,
        lease: Lease | None = None,
        owner_index: str | None = None,
    ) -> None:
        self.client = client
        # The owner's index of unfinished jobs (tasks.owners): each publish puts the job back in
        # it if Redis lost it, so the owner's pages find the job again after a reload.
        self.owner_index = owner_index
        self.settings = settings
        self.job_id = job_id
        self.lease = lease
        self.interval_s = settings.progress_interval_s
        self.next_due = 0.0
        self.retry_at = 0.0
        self.backoff_s = 0.1
        self.messages = 0
        self.cancel_requested = False
        self.ended = False  # the run's lease released by its final publish
        # The step last published: each publish adds the steps since to the console's per-minute
        # count (tasks.ops.series); a run's first publish (maybe a resume) adds none.
        self.counted_step: int | None = None

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def publish(self, state: JobState, now: float | None = None) -> bool:
        """Store and publish `state`; return True once the job has been asked to cancel."""
        now = time.monotonic() if now is None else now
        self.next_due = now + self.interval_s
        if now < self.retry_at:
            return self.cancel_requested
        try:
            self._send(state)
        except LeaseLost:
            raise
        except redis.RedisError as exc:
            log.warning("progress of job %s not published (%s); retrying in %.1fs", self.job_id, exc, self.backoff_s)
            self.retry_at = now + self.backoff_s
            self.backoff_s = min(self.backoff_s * 2, 5.0)
        else:
            self.backoff_s = 0.1
        return self.cancel_requested

    def publish_final(self, state: JobState, attempts: int = 5) -> None:
        """The final state must arrive: retry a few times with backoff, then leave it to Kafka. With a
        lease, the same round trip ends the run (see end_run) and `ended` becomes True."""
        for attempt in range(attempts):
            try:
                self._send(state, final=True)
                self.ended = self.lease is not None
                return
            except redis.RedisError as exc:
                log.warning("final state of job %s not published (%s)", self.job_id, exc)
                time.sleep(0.2 * 2**attempt)

    def _send(self, state: JobState, final: bool = False) -> None:
        pipe = self.client.pipeline(transaction=False)
        queue_store(pipe, self.settings, state)
        pipe.exists(cancel_key(self.job_id))
        if self.lease is not None and final:
            end_run(pipe, self.lease)
        elif self.lease is not None:
            pipe.eval(RENEW_LEASE, 1, lease_key(self.job_id), self.lease.token, LEASE_MS)
        if self.owner_index is not None:
            pipe.zadd(self.owner_index, {self.job_id: state.started_at or state.ts}, nx=True)
        if self.counted_step is not None and state.step > self.counted_step:
            series.count_steps(pipe, state.step - self.counted_step)  # last: the indices above stay
        results = pipe.execute()
        self.counted_step = state.step
        self.messages += 1
        self.cancel_requested = self.cancel_requested or bool(results[2])
        if self.lease is not None and not results[3]:
            raise LeaseLost(f"job {self.job_id} is run by another worker now")
