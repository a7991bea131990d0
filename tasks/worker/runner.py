"""Running one job: call its type's function with its params, log what it reports, publish
coalesced progress, and end with one final record.

Plain functions, testable without Celery; the Celery task only calls `run_job`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import redis

from tasks import owners, progress, queue
from tasks.clients import Clients
from tasks.history.store import StoreError
from tasks.joblog import JobLogError, log_place
from tasks.jobtypes import JobType, find
from tasks.model import InvalidInput, JobNotFound, JobState, JobStatus, check_job_id
from tasks.worker import output, tqdm_capture
from tasks.worker.context import JobCancelled, JobSuperseded, LogUnwritable, RunContext

log = logging.getLogger(__name__)

# A function that reports nothing for this long still has its lease renewed and its state
# (elapsed time) published by the runner's heartbeat thread.
HEARTBEAT_S = 1.0
# What the heartbeat sends the job's thread to stop a function that reports nothing: a real-time
# signal, which neither Celery nor billiard uses.
STOP_SIGNAL = signal.SIGRTMIN + 4
WORKER_LOST = "its worker was lost"
LOG_UNWRITABLE = "its log could not be written"


def run_job(job_id: str, job_type: str, params: dict[str, Any], c: Clients, owner: str | None = None) -> JobState:
    """Run the job to its end, once, even when several copies of the task are delivered. `owner`
    (who submitted it) is kept beside its progress and written in the first record of each run.

    A lease in Redis admits one copy at a time. The copy that holds it finds in the job's log
    whether an earlier run was interrupted, and does what the job type declares (OnWorkerLost).
    """
    check_job_id(job_id)
    lease = progress.Lease(c.redis, job_id)
    if not lease.wait(progress.LEASE_MS / 1000 + 1):
        log.info("job %s is run by another worker; this copy stops", job_id)
        return progress.load(c.redis, job_id) or JobState(job_id, 0, 0, JobStatus.QUEUED, time.time())
    pipe = c.redis.pipeline(transaction=False)
    pipe.exists(progress.cancel_key(job_id))
    progress.add_to_index(pipe, job_id)  # a task sent without a submit, too
    queue.leave(pipe, job_id)
    pipe.hset(progress.RUNNING_KEY, job_id, json.dumps({"type": job_type, "params": params, "owner": owner}))
    pipe.set(progress.params_key(job_id), json.dumps(params), ex=c.settings.retention_s or None)
    if owner is not None:
        progress.keep_owner(pipe, c.settings, job_id, owner)
    cancelled = bool(pipe.execute()[0])
    owner_index = owners.owner_key(owner) if owner is not None and owners.is_owner_id(owner) else None
    publisher = progress.ProgressPublisher(c.redis, c.settings, job_id, lease, owner_index)
    try:
        final = _run_with_one_retry(job_id, job_type, params, c, publisher, owner, cancelled)
    except progress.LeaseLost:
        log.warning("job %s was handed to another worker; this copy stops", job_id)
        return progress.load(c.redis, job_id) or JobState(job_id, 0, 0, JobStatus.RUNNING, time.time())
    except BaseException:
        lease.release()
        raise
    if not publisher.ended:  # the final publish, which ends the run, never got through: end it now
        pipe = c.redis.pipeline(transaction=False)
        progress.end_run(pipe, lease)
        pipe.execute()
    return final


def _run_with_one_retry(
    job_id: str,
    job_type: str,
    params: dict[str, Any],
    c: Clients,
    publisher: progress.ProgressPublisher,
    owner: str | None,
    cancelled: bool,
) -> JobState:
    """Run; after a Kafka failure, once more with a new producer (a broker restarted since the
    last job fences the old one), as after a lost worker; then fail the job. `cancelled`: whether
    it was asked to cancel when its run began (the retry asks again)."""
    try:
        try:
            return _run_leased(job_id, job_type, params, c, publisher, WORKER_LOST, owner, cancelled)
        except JobLogError as exc:
            log.warning("job %s: %s; trying again with a new producer", job_id, exc)
            c.reset_writer()
            return _run_leased(job_id, job_type, params, c, publisher, LOG_UNWRITABLE, owner)
    except JobLogError as exc:
        return _fail_without_log(c, publisher, job_id, job_type, params, exc)


def _run_leased(
    job_id: str,
    job_type: str,
    params: dict[str, Any],
    c: Clients,
    publisher: progress.ProgressPublisher,
    interrupted: str,
    owner: str | None = None,
    cancelled: bool | None = None,
) -> JobState:
    """Start, resume or restart the job from what its log holds; raises JobLogError when Kafka
    cannot be used. `interrupted` says what stopped an earlier run, if the log shows one;
    `cancelled` whether the job was asked to cancel just before (None: not known, ask Redis)."""
    if cancelled is None:
        cancelled = bool(c.redis.exists(progress.cancel_key(job_id)))
    if cancelled and not _has_log(c, job_id):
        # Cancelled before it ever started: no step ran, and no topic is made for it.
        queued = progress.load(c.redis, job_id, indexed=False)
        final = (
            replace(queued, status=JobStatus.CANCELLED, ts=time.time())
            if queued is not None
            else _final(job_id, job_type, params, JobStatus.CANCELLED, None)
        )
        publisher.publish_final(final)
        return final
    new_log = c.admin.create(job_id) or (c.settings.shared_log and _mark_log_start(c, job_id))
    # A new log holds no earlier run. Otherwise the read ends at a fence written after the last
    # record of any earlier run, which is dead: no step of it is missed, none runs twice.
    place = log_place(c.settings, job_id)
    last = None if new_log else c.reader.last(job_id, fence=lambda: c.writer.fence(place, job_id))
    if last is not None and last.status.finished:
        publisher.publish_final(last)
        return last
    c.writer.begin(place)
    now = time.time()
    try:
        job = find(c.catalog, job_type)
        values = job.validate(params)
    except InvalidInput as exc:  # the catalog changed since the job was queued
        return _finish(c, publisher, _final(job_id, job_type, params, JobStatus.FAILED, last, error=str(exc)))
    total = last.total if last is not None else job.total(params) if job.total is not None else 0
    if not new_log:  # the read of the log took a while: was it cancelled meanwhile?
        cancelled = bool(c.redis.exists(progress.cancel_key(job_id)))
    if cancelled:  # cancelled before it started: no step runs
        return _finish(c, publisher, _final(job_id, job_type, params, JobStatus.CANCELLED, last, total))
    started_at, resume_after, how = now, 0, None
    if last is not None:  # an earlier run of this job was interrupted
        started_at = last.started_at or now
        if job.on_worker_lost == "resume":
            resume_after, how = last.step, f"resumed after step {last.step}: {interrupted}"
        elif job.on_worker_lost == "restart":
            how = f"started again from the beginning: {interrupted}"
        else:
            error = f"{interrupted}, and a {job.name} job is not run again"
            return _finish(c, publisher, _final(job_id, job_type, params, JobStatus.FAILED, last, error=error))
    if how:
        log.warning("job %s %s", job_id, how)
    checkpoint = last.checkpoint if resume_after and last is not None else None
    ctx = RunContext(job_id, job, c, publisher, started_at, resume_after, total, checkpoint)
    ctx.message = how
    first = ctx.state()
    # The first record of a run holds the params and the owner, and says whether it resumed or started again.
    c.writer.append(place, job_id, replace(first, params=params, owner=owner).to_json())
    publisher.publish(first)
    return _finish(c, publisher, _call(job, dict(values), ctx, params))


def _mark_log_start(c: Clients, job_id: str) -> bool:
    """Shared layout: keep where the job's records will begin, before it writes any; True when no
    earlier run began its log. When Redis may have lost an earlier run's mark, the history store's
    first offset of the job, if it has one, is put back."""
    try:
        end = c.reader.end_offset(job_id)
    except JobNotFound as exc:  # the shared topic is gone (a broker that lost it): made again on the retry
        raise JobLogError("the job log topic is missing in Kafka") from exc
    try:
        marked, queued = progress.mark_log_start_queued(c.redis, c.settings, job_id, end)
    except redis.RedisError:
        return False  # unknown: the log is read from where the history store says it begins
    if not marked or queued:
        return marked
    try:
        first = c.history.first_offset(job_id)
    except StoreError:
        return False  # the fenced read from the mark just made is short
    if first is None:
        return True
    with contextlib.suppress(redis.RedisError):
        progress.mark_log_start(c.redis, c.settings, job_id, first, replace=True)
    return False


def _has_log(c: Clients, job_id: str) -> bool:
    """Whether an earlier run began the job's log: made its topic, or (shared layout) marked where it
    begins."""
    if c.settings.shared_log:
        return bool(c.redis.exists(progress.log_start_key(job_id)))
    try:
        c.reader.last(job_id)
    except JobNotFound:
        return False
    return True


def _call(job: JobType, values: dict[str, Any], ctx: RunContext, params: dict[str, Any]) -> JobState:
    """Run the function; its return, its exception or its stop becomes the job's final state."""
    try:
        status, end = _outcome(job, values, ctx)
        ctx.end_lines()
    except JobSuperseded:
        raise progress.LeaseLost(f"job {ctx.job_id} is run by another worker now") from None
    except LogUnwritable as exc:
        raise exc.error from None
    return ctx.state(status, params=params, **end)


def _outcome(job: JobType, values: dict[str, Any], ctx: RunContext) -> tuple[JobStatus, dict[str, Any]]:
    """How the function ended, with its result or error. A job's exception is the job's result,
    not a crash: its traceback becomes an error record of the job's log."""
    try:
        stopper = _stopper(ctx)
        with (
            tqdm_capture.capturing(ctx),
            output.capturing(ctx),
            _heartbeats.watching(ctx, stopper),
            stopper or contextlib.nullcontext(),
        ):
            returned = job.function(ctx, **values)
    except JobCancelled:
        return JobStatus.CANCELLED, {}
    except Exception as exc:
        log.exception("job %s failed at step %d", ctx.job_id, ctx.done)
        ctx.write_traceback(_traceback(exc))
        return JobStatus.FAILED, {"error": f"{type(exc).__name__}: {exc}"}
    try:
        return JobStatus.SUCCEEDED, {"result": encode_result(returned, ctx.c.settings.result_max_bytes)}
    except ValueError as exc:
        return JobStatus.FAILED, {"error": str(exc)}


def _traceback(exc: BaseException) -> str:
    """The exception's traceback from the job's function on (the runner's own frame left out)."""
    tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb.tb_next if tb is not None else None))


def encode_result(value: object, max_bytes: int) -> Any:
    """The function's return value as JSON values (a pydantic model as its fields); ValueError
    when it is not JSON or larger than `max_bytes`."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the job's result is not JSON: {exc}") from None
    if len(text.encode()) > max_bytes:
        raise ValueError(f"the job's result is {len(text.encode()):,} bytes of JSON; at most {max_bytes:,} are kept")
    return json.loads(text)


class _Stopper:
    """Stops a function that reports nothing, once it is cancelled or taken over: a signal to the
    job's thread (the main thread of a pool process), whose handler raises the job's stop there.
    Even a sleep or a blocking read ends with it. Armed only while the function runs."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.armed = False
        self.sent = False

    def _handle(self, _signum: int, _frame: object) -> None:
        stop = self.ctx.stop()
        if self.armed and stop is not None:
            self.armed = False
            raise stop

    def __enter__(self) -> None:
        signal.signal(STOP_SIGNAL, self._handle)
        self.armed = True

    def __exit__(self, *_: object) -> None:
        self.armed = False  # from here a late signal does nothing
        signal.signal(STOP_SIGNAL, signal.SIG_IGN)

    def send(self) -> None:
        """From the heartbeat thread: stop the function, once."""
        if self.armed and not self.sent:
            self.sent = True
            signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)


def _stopper(ctx: RunContext) -> _Stopper | None:
    """A stopper where signals can reach the job (it runs in the main thread), else None."""
    return _Stopper(ctx) if threading.current_thread() is threading.main_thread() else None


class _Heartbeats:
    """The process's heartbeat thread, shared by the jobs it runs (one at a time in a pool process,
    several with a thread pool). While a job's function runs, its lease is renewed and its state
    published whenever it has reported nothing for HEARTBEAT_S; when that publish finds the job
    cancelled (or taken over), the function is stopped with its stopper, where it has one.

    One thread for the process's life, not one per job: starting and joining a thread cost a
    one-step job about a tenth of its run. A forked process starts its own at its first job."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """No thread, nothing watched: so a process starts, and so a forked child goes on."""
        # Held while the thread beats: a job that stops being watched gets no beat after that.
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[RunContext, _Stopper | None]] = {}
        self._started = False

    @contextmanager
    def watching(self, ctx: RunContext, stopper: _Stopper | None) -> Iterator[None]:
        with self._lock:
            self._watched[id(ctx)] = (ctx, stopper)
            if not self._started:
                self._started = True
                threading.Thread(target=self._beat_forever, name="heartbeat", daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                del self._watched[id(ctx)]

    def _beat_forever(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S / 2)
            with self._lock:
                for ctx, stopper in self._watched.values():
                    if time.monotonic() - ctx.last_publish < HEARTBEAT_S:
                        continue
                    try:
                        ctx.heartbeat()  # Redis away: its publisher retries later
                    except Exception:  # a bug here must not end the beats of this process's later jobs
                        log.exception("job %s: its heartbeat failed", ctx.job_id)
                        continue
                    if stopper is not None and ctx.stop() is not None:
                        stopper.send()


_heartbeats = _Heartbeats()


def _final(
    job_id: str,
    job_type: str,
    params: dict[str, Any],
    status: JobStatus,
    last: JobState | None,
    total: int = 0,
    error: str | None = None,
) -> JobState:
    """A final state for a job whose function does not run (again): it ends where its log ended."""
    return JobState(
        job_id,
        last.step if last is not None else 0,
        last.total if last is not None else total,
        status,
        time.time(),
        last.started_at if last is not None else None,
        error=error,
        job_type=job_type,
        params=params,
    )


def _finish(c: Clients, publisher: progress.ProgressPublisher, final: JobState) -> JobState:
    """Write the final record, wait until the broker has every record, then publish it."""
    c.writer.append(log_place(c.settings, final.job_id), final.job_id, final.to_json())
    c.writer.flush()
    publisher.publish_final(final)
    return final


def _fail_without_log(
    c: Clients,
    publisher: progress.ProgressPublisher,
    job_id: str,
    job_type: str,
    params: dict[str, Any],
    exc: JobLogError,
) -> JobState:
    """Kafka is unreachable: the job fails with the reason in its state, kept in Redis only."""
    log.error("job %s failed: %s", job_id, exc)
    c.reset_writer()
    try:
        last = progress.load(publisher.client, job_id)
    except redis.RedisError:
        last = None
    final = _final(job_id, job_type, params, JobStatus.FAILED, last, error=str(exc))
    publisher.publish_final(final)
    return final
