"""Who holds which unfinished jobs: an index per owner in Redis, and the limit checked against it.

An owner is whoever submits (a browser today). Admission is one Lua script, so two tabs or two
processes submitting at once cannot both take the last free place: it drops the owner's jobs
that have finished, counts the rest, and only then writes the new job's snapshot and indexes it.
"""

from __future__ import annotations

import re
from typing import cast

import redis

from settings import Settings
from tasks.model import JobState, JobStatus
from tasks.progress import KEY_PREFIX, SNAPSHOT_PREFIX

# An owner id is what the owner's client keeps (a browser's id is a uuid4); nothing longer or odder.
OWNER_ID_RE = re.compile(r"[0-9A-Za-z_-]{8,64}")
UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)

# KEYS: the owner's index. ARGV: snapshot key prefix, limit, job id ('' to only prune), its
# snapshot, the snapshot's and index's time to live in seconds (0: none), the submit time.
# Returns the owner's unfinished jobs before the new one, negated when the new one was refused.
ADMIT = f"""
local open = 0
for _, id in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  local raw = redis.call('get', ARGV[1] .. id)
  local ok, state = pcall(cjson.decode, raw or '')
  if ok and (state.status == '{UNFINISHED[0]}' or state.status == '{UNFINISHED[1]}') then
    open = open + 1
  else
    redis.call('zrem', KEYS[1], id)
  end
end
if ARGV[3] == '' then return open end
if open >= tonumber(ARGV[2]) then return -open - 1 end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('set', ARGV[1] .. ARGV[3], ARGV[4], 'ex', ttl)
else
  redis.call('set', ARGV[1] .. ARGV[3], ARGV[4])
end
redis.call('zadd', KEYS[1], ARGV[6], ARGV[3])
if ttl > 0 then redis.call('expire', KEYS[1], ttl) end
return open
"""


def is_owner_id(value: object) -> bool:
    return isinstance(value, str) and OWNER_ID_RE.fullmatch(value) is not None


def owner_key(owner: str) -> str:
    if not is_owner_id(owner):
        raise ValueError(f"not an owner id: {owner!r}")
    return f"{KEY_PREFIX}owner:{owner}"


def _admit(client: redis.Redis, owner: str, limit: int, job_id: str, snapshot: str, ttl_s: int, at: float) -> int:
    result = client.eval(ADMIT, 1, owner_key(owner), SNAPSHOT_PREFIX, limit, job_id, snapshot, ttl_s, repr(at))
    return int(cast(int, result))


def admit(client: redis.Redis, settings: Settings, owner: str, limit: int, state: JobState) -> bool:
    """Record the new job `state` for `owner` unless they already hold `limit` unfinished jobs.

    On admission the job's snapshot is written (not published: nobody follows a job that did not
    exist) and the job joins the owner's index; on refusal nothing is written.
    """
    return _admit(client, owner, limit, state.job_id, state.to_json(), settings.retention_s, state.ts) >= 0


def recent(client: redis.Redis, owner: str) -> list[str]:
    """The owner's jobs that were unfinished when last looked at, newest first.

    A page shows each of them once more (a job that finished while its browser was closed shows
    its final state); the ones that have finished leave the index after this read.
    """
    raw = cast(list[bytes], client.zrange(owner_key(owner), 0, -1, desc=True))
    _admit(client, owner, 0, "", "", 0, 0.0)
    return [job_id.decode() for job_id in raw]
