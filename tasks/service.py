"""What the web page and the HTTP API do with jobs: submit, read, read the log, cancel, purge.

Synchronous on purpose: the Celery side calls these directly, async callers use a thread.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar, cast

import redis
from kombu.exceptions import OperationalError

from tasks import owners, progress, queue
from tasks.clients import Clients
from tasks.history.store import StoreError
from tasks.joblog import CONSUMER_MAX_AGE_S, JobLogError, JobLogReader, LogPage
from tasks.jobtypes import InvalidParams, JobType, find, params_size
from tasks.model import (
    DEFAULT_JOB_TYPE,
    InvalidInput,
    JobNotFound,
    JobState,
    JobStatus,
    JobStillRunning,
    LineKind,
    ServiceUnavailable,
    TooManyJobs,
    check_job_id,
)

log = logging.getLogger(__name__)

# A history store that cannot be read is said at most this often (its readers go on with Kafka).
STORE_WARNING_EVERY_S = 60.0
_store_warned_at = -STORE_WARNING_EVERY_S

# Longer than a pooled consumer lives (CONSUMER_MAX_AGE_S) plus the reaper's period.
PURGE_GRACE_S = 4 * CONSUMER_MAX_AGE_S

P = ParamSpec("P")
R = TypeVar("R")


def reaching_services(call: Callable[P, R]) -> Callable[P, R]:
    """Turn every failure to reach Redis, Kafka, Celery's broker or the history store into
    ServiceUnavailable, and log it:
    callers (the page, the API) handle one failure type besides the refusals of their input."""

    @functools.wraps(call)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return call(*args, **kwargs)
        except (redis.RedisError, JobLogError, OperationalError, StoreError) as exc:
            log.warning("%s: %s: %s", call.__name__, type(exc).__name__, exc)
            raise ServiceUnavailable from exc

    return wrapper


def check_params(job_type: object, params: object, c: Clients) -> tuple[JobType, dict[str, Any]]:
    """The job type and its params as JSON values with defaults filled in; InvalidInput (or its
    InvalidParams, naming each bad param) when the type or the params are refused."""
    job = find(c.catalog, job_type)
    values = job.json_params(params)
    if params_size(values) > c.settings.max_body_bytes:
        limit = c.settings.max_body_bytes
        raise InvalidParams({"params": f"may be at most {limit:,} bytes of JSON (MAX_BODY_BYTES)"})
    return job, values


@reaching_services
def submit_job(job_type: object, params: object, c: Clients, owner: str | None = None) -> JobState:
    """Check the type and params, record the job as queued and enqueue it; returns at once with
    the new id. Refused input raises InvalidInput and creates nothing.

    With an `owner`, the job is theirs (see tasks.owners) and counts against their limits: past
    SUBMITS_PER_MINUTE TooManySubmits is raised, past MAX_UNFINISHED_JOBS unfinished jobs
    TooManyJobs. With MAX_QUEUED_JOBS jobs waiting already, QueueFull is raised. A refused job
    creates nothing (no key, no task, no topic).
    """
    job, values = check_params(job_type, params, c)
    if owner is not None:
        owners.take_submit(c.redis, c.settings, owner)  # TooManySubmits past the rate
    total = job.total(values) if job.total is not None else 0
    state = JobState(
        str(uuid.uuid4()), 0, total, JobStatus.QUEUED, time.time(), job_type=job.name, params=values, owner=owner
    )
    # Without an owner the snapshot is written as the job joins the line; an owner's, at their admission.
    keep_s = c.settings.retention_s if owner is None else None
    place = queue.join(c.redis, state, c.settings.max_queued_jobs, keep_s)  # QueueFull when it is full
    try:
        if owner is not None:
            if not owners.admit(c.redis, c.settings, owner, c.settings.max_unfinished_jobs, state):
                raise TooManyJobs(c.settings.max_unfinished_jobs)
            progress.add_to_index(c.redis, state.job_id)
        _enqueue(c, state.job_id, job.name, values, owner)
    except Exception:
        # Not queued: leave no snapshot behind that would read as a job waiting forever.
        with contextlib.suppress(redis.RedisError):
            pipe = c.redis.pipeline(transaction=False)
            pipe.delete(progress.snapshot_key(state.job_id), progress.owned_by_key(state.job_id))
            pipe.srem(progress.INDEX_KEY, state.job_id)
            queue.leave(pipe, state.job_id)
            pipe.execute()
        raise
    return queue.placed(state, place)


@reaching_services
def rerun_job(job_id: object, c: Clients, owner: str | None = None) -> JobState:
    """A new job of the same type with the same params as the finished job `job_id` (which stays as
    it is), for its owner. JobStillRunning while it has not finished; the new job is admitted as
    any submit is."""
    state = get_job(job_id, c, owner)
    if not state.status.finished:
        raise JobStillRunning
    return submit_job(state.job_type, state.params or {}, c, owner)


@reaching_services
def owned_jobs(owner: str, c: Clients) -> list[str]:
    """The owner's jobs that were unfinished when last looked at, newest first (see owners.recent)."""
    return owners.recent(c.redis, owner)


# Most jobs one page of an owner's history holds.
HISTORY_PAGE_MAX = 100


@reaching_services
def job_history(
    owner: str,
    c: Clients,
    statuses: frozenset[JobStatus] = frozenset(),
    job_type: str | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 50,
) -> list[JobState]:
    """The owner's jobs as the history store holds them (every job a worker started, for its
    retention), newest first, of these `statuses` or `job_type` when given; `before` is where the
    previous page ended (the last job's started_at and id). A job still running is as Redis has it now."""
    if not 1 <= limit <= HISTORY_PAGE_MAX:
        raise InvalidInput(f"limit must be between 1 and {HISTORY_PAGE_MAX}")
    stored = c.history.jobs(owner, statuses, job_type, before, limit)
    return [state if state.status.finished else _live(state, c) for state in stored]


def _live(stored: JobState, c: Clients) -> JobState:
    """A running job's state as Redis has it now (the store's is as old as its lag), with the start
    the store orders it by, so that a page's last job is where the next page begins."""
    with contextlib.suppress(JobNotFound):
        if (live := progress.load(c.redis, stored.job_id, indexed=False)) is not None:
            return replace(live, started_at=stored.started_at)
    return stored


def _enqueue(c: Clients, job_id: str, job_type: str, params: dict[str, Any], owner: str | None) -> None:
    """Send the job's task; its Celery task id is the job id."""
    c.celery.send_task("tasks.jobs.run_job", args=(job_id, job_type, params, owner), task_id=job_id)


@reaching_services
def get_job(job_id: object, c: Clients, owner: str | None = None) -> JobState:
    """The job's latest state: the Redis snapshot, else the last record of its Kafka log.

    With an `owner`, only their job is found: anyone else gets JobNotFound, as for a job that does
    not exist. `owner=None` is for Jobstream's own processes (the worker, the progress hub)."""
    state, redis_up = _latest(check_job_id(job_id), c, owner)
    if state.status is JobStatus.QUEUED and redis_up:
        return queued_state(state, c)
    return state


def _latest(job_id: str, c: Clients, owner: str | None) -> tuple[JobState, bool]:
    """The job's latest state (see get_job), without its place in line, and whether Redis answered."""
    try:
        state = progress.load(c.redis, job_id)
    except redis.RedisError:  # Redis is down: the log still knows
        state, redis_up = None, False
    else:
        redis_up = True
    if state is None:
        state = stored_end(job_id, c) or c.reader.last(job_id)
        if state is None:
            raise JobNotFound("no such job")
        if redis_up:
            progress.refill(c.redis, c.settings, state)
    needs_params = state.params is None and state.status is JobStatus.RUNNING
    if needs_params or (state.owner is None and owner is not None):
        # Redis lost them: the log's first record has them (its topic is made when a worker starts it).
        with contextlib.suppress(JobNotFound):
            first = c.reader.page(job_id, 0, 1).records
            if first and isinstance(first[0], JobState):
                state = replace(state, params=state.params or first[0].params, owner=first[0].owner)
                if redis_up and state.owner is not None:
                    progress.keep_owner(c.redis, c.settings, job_id, state.owner)
    if owner is not None and (state.owner or owners.ANONYMOUS) != owner:
        raise JobNotFound("no such job")
    return state, redis_up


def stored_end(job_id: str, c: Clients) -> JobState | None:
    """The job's final state when the history store has read its log to the end (it then holds the
    whole log: a job's records are in one partition, stored in order); None while the job runs, the
    store lags, or it cannot be read, and the caller asks Kafka."""
    try:
        state = c.history.job(job_id)
    except StoreError as exc:
        global _store_warned_at
        if time.monotonic() - _store_warned_at > STORE_WARNING_EVERY_S:
            _store_warned_at = time.monotonic()
            log.warning("reading from Kafka: %s", exc)
        return None
    return state if state is not None and state.status.finished else None


def queued_state(state: JobState, c: Clients) -> JobState:
    """A queued job's state with its place in line and estimated start (as it is, once started)."""
    return queue.placed(state, queue.places(c.redis, [state.job_id]).get(state.job_id))


@reaching_services
def places(job_ids: list[str], c: Clients) -> dict[str, queue.Place]:
    """The places in line and estimated starts of those of `job_ids` still waiting for a worker."""
    return queue.places(c.redis, job_ids)


@reaching_services
def read_log(
    job_id: object,
    offset: int,
    limit: int,
    c: Clients,
    kinds: frozenset[LineKind] | None = None,
    owner: str | None = None,
) -> LogPage:
    """The job's history: at most `limit` records of its log from `offset` (0: the first) on, of
    these `kinds` only when given (see JobLogReader.page); with an `owner`, only theirs. From the
    history store once it holds the job's end, else from Kafka.

    A queued job's log is empty until a worker takes it. A job condemned by retention reads as not
    found, as in `get_job`; with Redis down the log still answers.
    """
    job_id = check_job_id(job_id)
    if owner is not None:
        _latest(job_id, c, owner)  # JobNotFound for anyone else's, and once condemned
        known = True
    else:
        try:
            known = progress.load(c.redis, job_id) is not None  # JobNotFound once condemned
        except redis.RedisError:
            known = False
    if stored_end(job_id, c) is not None:
        with contextlib.suppress(StoreError):
            return c.history.page(job_id, offset, limit, kinds)
    try:
        return c.reader.page(job_id, offset, limit, kinds)
    except JobNotFound:
        if known:  # its topic is created when a worker starts it
            return LogPage([], offset, end=True)
        raise


@reaching_services
def cancel_job(job_id: object, c: Clients, owner: str | None = None) -> JobState:
    """Ask the job to stop (with an `owner`, only theirs). A queued job is cancelled at once; a
    running one stops at its next progress publish (within PROGRESS_INTERVAL_MS) and writes a
    final `cancelled` record."""
    state = get_job(job_id, c, owner)
    if state.status.finished:
        return state
    c.redis.set(progress.cancel_key(state.job_id), 1, ex=c.settings.retention_s or None)
    if state.status is JobStatus.QUEUED:
        lease = progress.Lease(c.redis, state.job_id)
        # Holding the lease means no worker runs the job now; when one picks it up, it sees the
        # flag and runs no step (nor makes the job a topic: see tasks.worker.runner).
        if lease.acquire():
            try:
                state = replace(state, status=JobStatus.CANCELLED, ts=time.time(), queue_position=None, starts_in=None)
                progress.store(c.redis, c.settings, state)
                queue.leave(c.redis, state.job_id)
            finally:
                lease.release()
    return state


def recover_stalled_jobs(c: Clients) -> list[str]:
    """Hand back to the queue the started, unfinished jobs whose runner died with its worker.

    A runner renews its job's lease while it runs; a lapsed lease means no one runs the job. The
    task it gets back resumes after the last step in the job's log (see tasks.worker.runner.run_job).
    """
    try:
        rebuild_index(c)
    except (JobLogError, StoreError) as exc:  # a stalled job is handed back all the same
        log.warning("the job index could not be rebuilt: %s", exc)
    queue.forget_stale(c.redis)
    recovered = []
    running = cast(dict[bytes, bytes], c.redis.hgetall(progress.RUNNING_KEY))
    for raw_id, raw_task in running.items():
        job_id, task = raw_id.decode(), json.loads(raw_task)
        if isinstance(task, int):  # recorded before job types: the total of a count job
            task = {"type": DEFAULT_JOB_TYPE, "params": {"n": task}}
        owner = task.get("owner")
        if c.redis.exists(progress.lease_key(job_id)):
            continue
        state = progress.load(c.redis, job_id)
        if state is not None and state.status.finished:
            c.redis.hdel(progress.RUNNING_KEY, job_id)
        elif c.redis.set(progress.requeued_key(job_id), 1, nx=True, ex=progress.LEASE_MS // 1000 * 3):
            _enqueue(c, job_id, task["type"], task["params"], owner)
            log.warning("requeued job %s: its worker is gone", job_id)
            recovered.append(job_id)
    return recovered


def logged_job_ids(c: Clients) -> list[str]:
    """Every job with a log: its own topic, or (shared layout) its records in the history store."""
    return c.history.job_ids() if c.settings.shared_log else c.admin.job_ids()


def rebuild_index(c: Clients) -> int:
    """After Redis lost its data, put every job with a log (logged_job_ids) back in the job index (see
    progress.INDEX_KEY); nothing when the index is complete. Returns how many it added."""
    if c.redis.exists(progress.INDEX_COMPLETE_KEY):
        return 0
    job_ids = logged_job_ids(c)
    pipe = c.redis.pipeline(transaction=False)
    for start in range(0, len(job_ids), 1000):
        pipe.sadd(progress.INDEX_KEY, *job_ids[start : start + 1000])
    pipe.set(progress.INDEX_COMPLETE_KEY, 1)
    pipe.execute()
    log.info("job index rebuilt: %d jobs", len(job_ids))
    return len(job_ids)


def purge_expired_jobs(c: Clients, now: float | None = None) -> list[str]:
    """Delete the logs and snapshots of jobs that finished more than the retention ago.

    In two steps: a job is first condemned (it reads as not found from then on, so nobody opens
    its log), and its topic is deleted on a later run, once every consumer that may have read it
    has been retired (see JobLogReader). In the shared layout Kafka's own retention removes the
    records. Returns the ids deleted by this run.
    """
    now = time.time() if now is None else now
    condemned_now = 0
    topics = set(logged_job_ids(c))
    _forget_vanished(c, topics)
    scored = cast(list[tuple[bytes, float]], c.redis.zrange(progress.PURGING_KEY, 0, -1, withscores=True))
    condemned = {raw.decode(): at for raw, at in scored}
    due = [job_id for job_id, at in condemned.items() if at <= now - PURGE_GRACE_S]
    reader = JobLogReader(c.settings, pool_size=1, starts=c.log_start)  # closed before anything is deleted
    try:
        for job_id in topics:
            if job_id in condemned:
                continue
            try:
                # The snapshot, while Redis has it, is the log's last record: no Kafka read.
                last = progress.load(c.redis, job_id, indexed=False) or stored_end(job_id, c) or reader.last(job_id)
            except JobNotFound:
                continue
            except JobLogError as exc:  # one unreadable log must not stop the purge of the others
                log.warning("retention skipped job %s: %s", job_id, exc)
                continue
            if last is not None and last.status.finished and last.ts < now - c.settings.retention_s:
                _condemn(c, job_id, now)
                condemned_now += 1
    finally:
        reader.close()
    if due:
        c.admin.delete(due)
        keys = [
            key(job_id)
            for job_id in due
            for key in (
                progress.snapshot_key,
                progress.cancel_key,
                progress.params_key,
                progress.owned_by_key,
                progress.log_start_key,
            )
        ]
        c.redis.delete(*keys)
        c.redis.zrem(progress.PURGING_KEY, *due)
        c.redis.srem(progress.INDEX_KEY, *due)
        queue.leave(c.redis, *due)
    if due or condemned_now:
        log.info("retention: %d expired jobs condemned, %d deleted", condemned_now, len(due))
    return due


def _forget_vanished(c: Clients, topics: set[str]) -> None:
    """Take out of the job index the jobs with neither a topic nor a snapshot any more (a job
    cancelled before it started has no topic, and its snapshot expires with the retention)."""
    candidates = [raw.decode() for raw in cast(set[bytes], c.redis.smembers(progress.INDEX_KEY))]
    candidates = [job_id for job_id in candidates if job_id not in topics]
    if not candidates:
        return
    pipe = c.redis.pipeline(transaction=False)
    for job_id in candidates:
        pipe.exists(progress.snapshot_key(job_id))
    vanished = [job_id for job_id, kept in zip(candidates, pipe.execute(), strict=True) if not kept]
    if vanished:
        c.redis.srem(progress.INDEX_KEY, *vanished)


def _condemn(c: Clients, job_id: str, now: float) -> None:
    pipe = c.redis.pipeline(transaction=False)
    pipe.set(progress.gone_key(job_id), 1, ex=int(PURGE_GRACE_S * 10))
    pipe.zadd(progress.PURGING_KEY, {job_id: now})
    pipe.execute()
