"""The Celery workers and the queue, for the operator.

Each worker's main process writes a heartbeat to Redis every HEARTBEAT_S from a thread of its own
(started when the worker is ready, see tasks.worker.celery_app): a hash per worker (host, pid,
concurrency, the jobs it runs now, when it was last seen) and a sorted set of the workers by when
they were last seen. A worker not seen for WORKER_TIMEOUT_S is gone (killed, or its machine lost);
one that shut down cleanly says so and is gone at once. A gone worker stays listed for GONE_KEEP_S,
then the set drops it and its hash expires: what Redis holds is bounded by the workers of the last hour.
The same heartbeat notes the queue's depth for the console's per-minute chart (tasks.ops.series).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis

from settings import Settings
from tasks import progress, queue, service
from tasks.clients import Clients
from tasks.model import JobState
from tasks.ops import series
from tasks.ops.jobs import owner_tag

log = logging.getLogger(__name__)

WORKERS_KEY = "jobstream:ops:workers"
WORKER_PREFIX = "jobstream:ops:worker:"
HEARTBEAT_S = 2.0
# A worker not heard from for this long is gone: a SIGKILLed worker shows gone within it.
WORKER_TIMEOUT_S = 10.0
# How long a gone worker stays listed.
GONE_KEEP_S = 3600
LONGEST_WAITING = 10


def worker_key(name: str) -> str:
    return WORKER_PREFIX + name


class Heartbeat:
    """A worker's heartbeat: `start()` in its main process, `stop()` when it shuts down."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        concurrency: int,
        running: Callable[[], list[str]],
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.client = progress.connect(settings)  # its own connection: the thread's alone
        self.name = name
        self.running = running
        self.fields = {
            "host": host or name.partition("@")[2] or os.uname().nodename,
            "pid": pid or os.getpid(),
            "concurrency": concurrency,
            "started_at": time.time(),
        }
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="jobstream-heartbeat", daemon=True)
        self.failing = False

    def start(self) -> None:
        self.beat()
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(HEARTBEAT_S):
            self.beat()

    def beat(self, now: float | None = None) -> None:
        """Say the worker is alive and what it runs; note the queue's depth. Redis down: said once, retried."""
        now = time.time() if now is None else now
        try:
            pipe = self.client.pipeline(transaction=False)
            fields = {**self.fields, "last_seen": now, "running": json.dumps(self.running())}
            pipe.hset(worker_key(self.name), mapping=fields)
            pipe.expire(worker_key(self.name), GONE_KEEP_S + 60)
            pipe.zadd(WORKERS_KEY, {self.name: now})
            pipe.zremrangebyscore(WORKERS_KEY, "-inf", now - GONE_KEEP_S)
            pipe.expire(WORKERS_KEY, GONE_KEEP_S + 60)
            pipe.zcard(queue.QUEUE_KEY)
            depth = pipe.execute()[-1]
            series.note_queue_depth(self.client, int(depth), now)
        except redis.RedisError as exc:
            if not self.failing:
                log.warning("worker heartbeat not written (%s); retrying every %.0f s", exc, HEARTBEAT_S)
            self.failing = True
        else:
            self.failing = False

    def stop(self) -> None:
        """Stop beating and say the worker shut down: it is listed as gone at once."""
        self.stopping.set()
        try:
            self.client.hset(worker_key(self.name), mapping={"stopped_at": time.time(), "running": "[]"})
        except redis.RedisError as exc:
            log.warning("worker's shutdown not written (%s): it shows gone after %.0f s", exc, WORKER_TIMEOUT_S)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    pid: int
    concurrency: int
    running: list[str]
    started_at: float
    last_seen: float
    status: str  # online or gone


@dataclass(frozen=True)
class WaitingJob:
    job_id: str
    type: str | None
    owner: str | None
    submitted_at: float
    waiting_s: float


@dataclass(frozen=True)
class Workers:
    workers: list[WorkerInfo]
    queue_depth: int
    longest_waiting: list[WaitingJob]


def _worker(name: str, raw: dict[bytes, bytes], now: float) -> WorkerInfo | None:
    try:
        fields = {key.decode(): value.decode() for key, value in raw.items()}
        last_seen = float(fields["last_seen"])
        online = "stopped_at" not in fields and now - last_seen <= WORKER_TIMEOUT_S
        return WorkerInfo(
            name=name,
            host=fields["host"],
            pid=int(fields["pid"]),
            concurrency=int(fields["concurrency"]),
            # Once gone, it runs nothing: its jobs are handed to other workers (service.recover_stalled_jobs).
            running=json.loads(fields["running"]) if online else [],
            started_at=float(fields["started_at"]),
            last_seen=last_seen,
            status="online" if online else "gone",
        )
    except (KeyError, ValueError):  # its hash expired between the two reads, or is not one of ours
        return None


@service.reaching_services
def list_workers(c: Clients, now: float | None = None) -> Workers:
    """Every worker seen in the last GONE_KEEP_S, the most recently seen first, with the queue's depth
    and the jobs waiting longest."""
    now = time.time() if now is None else now
    names = [
        raw.decode() for raw in cast(list[bytes], c.redis.zrevrangebyscore(WORKERS_KEY, "+inf", now - GONE_KEEP_S))
    ]
    pipe = c.redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(worker_key(name))
    pipe.zcard(queue.QUEUE_KEY)
    pipe.zrange(queue.QUEUE_KEY, 0, LONGEST_WAITING - 1, withscores=True)
    *hashes, depth, oldest = pipe.execute()
    workers = [info for name, raw in zip(names, hashes, strict=True) if (info := _worker(name, raw, now))]
    return Workers(workers, int(depth), _waiting(c, cast(list[tuple[bytes, float]], oldest), now))


def _waiting(c: Clients, oldest: list[tuple[bytes, float]], now: float) -> list[WaitingJob]:
    if not oldest:
        return []
    ids = [raw.decode() for raw, _ in oldest]
    pipe = c.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.get(progress.snapshot_key(job_id))
        pipe.get(progress.owned_by_key(job_id))
    found = pipe.execute()
    waiting = []
    for (job_id, (_, at)), raw, owner in zip(zip(ids, oldest, strict=True), found[::2], found[1::2], strict=True):
        state = JobState.from_json(raw) if raw is not None else None
        waiting.append(
            WaitingJob(
                job_id=job_id,
                type=state.job_type if state else None,
                owner=owner_tag(owner.decode() if owner else state.owner if state else None, c),
                submitted_at=float(at),
                waiting_s=round(max(0.0, now - float(at)), 3),
            )
        )
    return waiting


_heartbeat: Heartbeat | None = None


def start_heartbeat(settings: Settings, name: str, concurrency: int, running: Callable[[], list[str]]) -> None:
    """Start this worker's heartbeat (once per process)."""
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = Heartbeat(settings, name, concurrency, running)
        _heartbeat.start()


def stop_heartbeat() -> None:
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
