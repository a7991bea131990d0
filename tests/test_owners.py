"""The per-owner index of unfinished jobs and its limit, on the real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from settings import Settings
from tasks import owners, progress
from tasks.clients import Clients
from tasks.model import JobState, JobStatus


def queued(total: int = 10) -> JobState:
    return JobState(str(uuid.uuid4()), 0, total, JobStatus.QUEUED, time.time())


def test_concurrent_submitters_never_pass_the_limit_together(settings: Settings) -> None:
    owner, limit, tries = uuid.uuid4().hex, 3, 24
    admitted: list[str] = []
    start = threading.Barrier(tries)

    def submit() -> None:
        client = redis.Redis.from_url(settings.redis_url)  # a connection each: they really race
        state = queued()
        start.wait()
        if owners.admit(client, settings, owner, limit, state):
            admitted.append(state.job_id)

    threads = [threading.Thread(target=submit) for _ in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == limit
    client = redis.Redis.from_url(settings.redis_url)
    assert set(owners.recent(client, owner)) == set(admitted)
    # Only the admitted jobs were written; the refused ones left nothing.
    snapshots = [progress.load(client, job_id) for job_id in admitted]
    assert all(s is not None and s.status is JobStatus.QUEUED for s in snapshots)


def test_finished_jobs_free_their_place_and_are_shown_once_more(c: Clients, settings: Settings) -> None:
    owner = str(uuid.uuid4())
    first, second = queued(), queued()
    assert owners.admit(c.redis, settings, owner, 2, first)
    assert owners.admit(c.redis, settings, owner, 2, second)
    refused = queued()
    assert not owners.admit(c.redis, settings, owner, 2, refused)
    assert not c.redis.exists(progress.snapshot_key(refused.job_id)), "nothing stored for it"

    progress.store(c.redis, settings, JobState(first.job_id, 10, 10, JobStatus.SUCCEEDED, time.time()))
    # The finished job is still shown once (its final state), newest first, then leaves the index.
    assert owners.recent(c.redis, owner) == [second.job_id, first.job_id]
    assert owners.recent(c.redis, owner) == [second.job_id]
    assert owners.admit(c.redis, settings, owner, 2, queued())


def test_a_lost_snapshot_frees_its_place(c: Clients, settings: Settings) -> None:
    owner, lost = str(uuid.uuid4()), queued()
    assert owners.admit(c.redis, settings, owner, 1, lost)
    c.redis.delete(progress.snapshot_key(lost.job_id))  # expired with the retention, or Redis flushed
    assert owners.admit(c.redis, settings, owner, 1, queued())


@pytest.mark.parametrize("owner", ["", "short", "x" * 65, "a b c d e f", "../../etc", None, 7])
def test_owner_ids_are_checked_before_any_key_is_built(owner: object) -> None:
    assert not owners.is_owner_id(owner)
    with pytest.raises(ValueError, match="not an owner id"):
        owners.owner_key(owner)  # type: ignore[arg-type]
