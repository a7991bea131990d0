"""Every owner's jobs for the operator: a page of the history store with live progress from Redis,
and the bulk actions (cancel the queued jobs of a type, run again the failed jobs of a window).

Owners are shown as tags: a keyed hash (HMAC of SESSION_SECRET), the same for every job of an owner,
which nobody without the secret can turn back into the owner id (the key to their jobs).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from typing import cast

import redis

from tasks import progress, queue, service
from tasks.clients import Clients
from tasks.model import (
    InvalidInput,
    JobNotFound,
    JobState,
    JobStatus,
    JobStillRunning,
    QueueFull,
    TooManyJobs,
    TooManySubmits,
)
from tasks.ops.sessions import derived_key

log = logging.getLogger(__name__)

PAGE_MAX = 100
# A prefix of a job id: what a person types to find one (uuid4, lower case, with dashes).
ID_PREFIX_RE = re.compile(r"[0-9a-f-]{1,36}")
TYPE_MAX_CHARS = 100
PARAMS_MAX_CHARS = 120
OWNER_TAG_HEX = 12
# Most jobs one bulk action changes; a call says when more were left for the next one.
BULK_MAX = 1000
RERUN_WINDOW_MAX_MINUTES = 24 * 60
# A failed job the rerun action ran again is marked this long: the action never runs it twice.
RERUN_MARK_PREFIX = "jobstream:ops:rerun:"
RERUN_MARK_S = 7 * 24 * 3600
# Jobs read from the queue or the store per round trip while a bulk action looks for its jobs.
SCAN_BATCH = 500


@dataclass(frozen=True)
class OpsJob:
    """A row of the operator's list: a job, its owner as a tag, its params in short."""

    job_id: str
    type: str
    owner: str | None
    params: str | None
    status: JobStatus
    step: int
    total: int
    started_at: float | None
    duration: float | None


def owner_tag(owner: str | None, c: Clients) -> str | None:
    """A short, stable tag for an owner: the same owner always gets the same tag, and the tag does
    not give the owner id back without SESSION_SECRET."""
    if owner is None:
        return None
    digest = hmac.new(derived_key(c.settings, "owner-tag"), owner.encode(), hashlib.sha256).hexdigest()
    return "o-" + digest[:OWNER_TAG_HEX]


def params_in_short(params: object) -> str | None:
    if params is None:
        return None
    text = json.dumps(params, separators=(", ", ": "), ensure_ascii=False)
    return text if len(text) <= PARAMS_MAX_CHARS else text[: PARAMS_MAX_CHARS - 1] + "…"


def check_id_prefix(prefix: str) -> str:
    """The prefix in lower case; InvalidInput unless it is hex digits and dashes, at most 36."""
    lowered = prefix.strip().lower()
    if not ID_PREFIX_RE.fullmatch(lowered):
        raise InvalidInput("id_prefix must be the start of a job id: 1 to 36 hex digits and dashes")
    return lowered


def check_type_name(job_type: object) -> str:
    if not isinstance(job_type, str) or not 0 < len(job_type) <= TYPE_MAX_CHARS:
        raise InvalidInput(f"type must be a job type's name (1 to {TYPE_MAX_CHARS} characters)")
    return job_type


def row(state: JobState, c: Clients, now: float) -> OpsJob:
    start = state.started_at
    end = state.ts if state.status.finished else now
    return OpsJob(
        job_id=state.job_id,
        type=state.job_type,
        owner=owner_tag(state.owner, c),
        params=params_in_short(state.params),
        status=state.status,
        step=state.step,
        total=state.total,
        started_at=start,
        duration=None if start is None or state.status is JobStatus.QUEUED else round(max(0.0, end - start), 3),
    )


def with_live_progress(stored: list[JobState], c: Clients) -> list[JobState]:
    """The running jobs of a page as Redis has them now, when that is further than the store (which
    is as old as its lag), in one round trip; who, with what and the start stay the store's, so that
    the page's order and its cursor do not move."""
    running = [state for state in stored if not state.status.finished]
    if not running:
        return stored
    raws = cast(list[bytes | None], c.redis.mget([progress.snapshot_key(state.job_id) for state in running]))
    live = {}
    for state, raw in zip(running, raws, strict=True):
        if raw is None:
            continue
        snapshot = JobState.from_json(raw)
        if snapshot.supersedes(state.status, state.step):
            live[state.job_id] = replace(
                state,
                status=snapshot.status,
                step=snapshot.step,
                total=snapshot.total or state.total,
                ts=max(snapshot.ts, state.ts),
                message=snapshot.message,
            )
    return [live.get(state.job_id, state) for state in stored]


@service.reaching_services
def list_jobs(
    c: Clients,
    statuses: frozenset[JobStatus] = frozenset(),
    job_type: str | None = None,
    id_prefix: str | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 50,
    now: float | None = None,
) -> list[OpsJob]:
    """Every owner's jobs that a worker started (the history store), newest first, of these
    `statuses`, `job_type` and id prefix when given; `before` is where the previous page ended (its
    last job's started_at and id, as the owner's history pages). Running jobs with their live progress."""
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidInput(f"limit must be between 1 and {PAGE_MAX}")
    prefix = check_id_prefix(id_prefix) if id_prefix else None
    stored = c.history.jobs(None, statuses, job_type, before, limit, id_prefix=prefix)
    now = time.time() if now is None else now
    return [row(state, c, now) for state in with_live_progress(stored, c)]


# -- bulk actions ------------------------------------------------------------------------------


@dataclass
class Refusal:
    job_id: str
    error: str


@dataclass
class Cancelled:
    cancelled: list[str] = field(default_factory=list)
    more: bool = False


@dataclass
class Rerun:
    """What running failed jobs again did: each new job by the failed one it repeats."""

    rerun: dict[str, str] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    already_rerun: list[str] = field(default_factory=list)
    more: bool = False


def queued_of_type(c: Clients, job_type: str) -> list[str]:
    """The jobs of this type waiting for a worker, longest waiting first (all of them: the queue is
    at most MAX_QUEUED_JOBS)."""
    found: list[str] = []
    start = 0
    while True:
        batch = cast(list[bytes], c.redis.zrange(queue.QUEUE_KEY, start, start + SCAN_BATCH - 1))
        ids = [raw.decode() for raw in batch]
        if not ids:
            return found
        raws = cast(list[bytes | None], c.redis.mget([progress.snapshot_key(job_id) for job_id in ids]))
        for job_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            state = JobState.from_json(raw)
            if state.job_type == job_type and state.status is JobStatus.QUEUED:
                found.append(job_id)
        start += SCAN_BATCH


@service.reaching_services
def count_queued(c: Clients, job_type: object) -> int:
    """How many jobs of this type wait for a worker (what cancel_queued would cancel, up to BULK_MAX)."""
    return len(queued_of_type(c, check_type_name(job_type)))


@service.reaching_services
def cancel_queued(c: Clients, job_type: object, operator: str) -> Cancelled:
    """Cancel the jobs of this type that wait for a worker, BULK_MAX at most (`more` when some are
    left). A job a worker takes meanwhile is asked to stop, as a cancel from its page would."""
    job_type = check_type_name(job_type)
    waiting = queued_of_type(c, job_type)
    result = Cancelled(more=len(waiting) > BULK_MAX)
    for job_id in waiting[:BULK_MAX]:
        with contextlib.suppress(JobNotFound):  # purged meanwhile
            service.cancel_job(job_id, c)
            result.cancelled.append(job_id)
    log.warning("operator %s cancelled %d queued %s jobs", operator, len(result.cancelled), job_type)
    return result


def check_window(since_minutes: object) -> int:
    if not isinstance(since_minutes, int) or isinstance(since_minutes, bool):
        raise InvalidInput("since_minutes must be a whole number of minutes")
    if not 1 <= since_minutes <= RERUN_WINDOW_MAX_MINUTES:
        raise InvalidInput(f"since_minutes must be between 1 and {RERUN_WINDOW_MAX_MINUTES}")
    return since_minutes


def failed_since(c: Clients, since: float, limit: int) -> tuple[list[JobState], list[str], bool]:
    """Up to `limit` failed jobs that ended at or after `since` and were not run again by this action
    yet, oldest end first; up to `limit` of those it ran again already; and whether there are more
    to run again."""
    found: list[JobState] = []
    already: list[str] = []
    after: tuple[float, str] | None = None
    while True:
        batch = c.history.finished_since(since, JobStatus.FAILED, after, SCAN_BATCH)
        if not batch:
            return found, already, False
        pipe = c.redis.pipeline(transaction=False)
        for state in batch:
            pipe.exists(RERUN_MARK_PREFIX + state.job_id)
        for state, marked in zip(batch, pipe.execute(), strict=True):
            if marked:
                if len(already) < limit:
                    already.append(state.job_id)
            elif len(found) == limit:
                return found, already, True
            else:
                found.append(state)
        after = (batch[-1].ts, batch[-1].job_id)


@service.reaching_services
def count_failed(c: Clients, since_minutes: object, now: float | None = None) -> int:
    """How many failed jobs rerun_failed would run again (up to BULK_MAX)."""
    since = (time.time() if now is None else now) - 60 * check_window(since_minutes)
    return len(failed_since(c, since, BULK_MAX)[0])


@service.reaching_services
def rerun_failed(c: Clients, since_minutes: object, operator: str, now: float | None = None) -> Rerun:
    """Run again (service.rerun_job) every job that failed in the last `since_minutes` minutes, as
    the history store has them, BULK_MAX at most (`more` when some are left). Each new job is its
    owner's and counts against that owner's limits as any submit does: one refused is listed with
    the reason, and a later call tries it again. A job this action ran again is never run again by
    it (`already_rerun`), so a second click does not double the work."""
    since = (time.time() if now is None else now) - 60 * check_window(since_minutes)
    failed, already, more = failed_since(c, since, BULK_MAX)
    result = Rerun(already_rerun=already, more=more)
    for state in failed:
        mark = RERUN_MARK_PREFIX + state.job_id
        if not c.redis.set(mark, 1, nx=True, ex=RERUN_MARK_S):
            result.already_rerun.append(state.job_id)
            continue
        try:
            new = service.rerun_job(state.job_id, c, state.owner)
        except (TooManySubmits, TooManyJobs, QueueFull, InvalidInput, JobNotFound, JobStillRunning) as exc:
            c.redis.delete(mark)
            result.refused.append(Refusal(state.job_id, str(exc) or "no such job"))
        except BaseException:
            with contextlib.suppress(redis.RedisError):
                c.redis.delete(mark)
            raise
        else:
            result.rerun[state.job_id] = new.job_id
    log.warning(
        "operator %s ran again %d jobs that failed in the last %s minutes (%d refused)",
        operator,
        len(result.rerun),
        since_minutes,
        len(result.refused),
    )
    return result
