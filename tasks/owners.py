"""Who owns which jobs: an index per owner of their unfinished jobs in Redis, and the limit checked against it.

An owner is whoever submits: a browser (its signed session cookie, see rxapp.session), a script
(its API token, see tasks.tokens), or ANONYMOUS, the one owner of every API call without a token
where API_ALLOW_ANONYMOUS lets them in. Only a job's owner may read it, page through its log,
cancel it or run it again; anyone else is told it does not exist. Admission is one Lua script, so two tabs or two
processes submitting at once cannot both take the last free place: it drops the owner's jobs
that have finished, counts the rest, and only then writes the new job's snapshot and indexes it.
"""

from __future__ import annotations

import math
import re
from typing import cast

import redis

from settings import Settings
from tasks import ratelimit
from tasks.model import JobState, JobStatus, TooManySubmits
from tasks.progress import KEY_PREFIX, SNAPSHOT_PREFIX, owned_by_key

# An owner id: "b-" and 32 hex digits for a browser, "t-" and 16 for a token; nothing longer or odder.
OWNER_ID_RE = re.compile(r"[0-9A-Za-z_-]{8,64}")
ANONYMOUS = "anonymous"
UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)

# KEYS: the owner's index, the job's owned-by key. ARGV: snapshot key prefix, limit, job id ('' to
# only prune), its snapshot, the time to live in seconds of the snapshot, the index and the
# owned-by key (0: none), the submit time, the owner.
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
  redis.call('set', KEYS[2], ARGV[7], 'ex', ttl)
else
  redis.call('set', ARGV[1] .. ARGV[3], ARGV[4])
  redis.call('set', KEYS[2], ARGV[7])
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
    owned_by = owned_by_key(job_id) if job_id else owner_key(owner)  # only pruning: not written
    keys = (owner_key(owner), owned_by)
    result = client.eval(ADMIT, 2, *keys, SNAPSHOT_PREFIX, limit, job_id, snapshot, ttl_s, repr(at), owner)
    return int(cast(int, result))


def admit(client: redis.Redis, settings: Settings, owner: str, limit: int, state: JobState) -> bool:
    """Record the new job `state` for `owner` unless they already hold `limit` unfinished jobs.

    On admission the job's snapshot and its owner are written (not published: nobody follows a job
    that did not exist) and the job joins the owner's index; on refusal nothing is written.
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


def take_submit(client: redis.Redis, settings: Settings, owner: str) -> None:
    """Count a submit against the owner's rate (a token bucket in Redis, shared by every web
    process): TooManySubmits, with when to try again, once they are past it."""
    key = f"{owner_key(owner)}:submits"
    wait_s = ratelimit.take(client, key, settings.submits_per_minute / 60, settings.submit_burst)
    if wait_s > 0:
        raise TooManySubmits(max(1, math.ceil(wait_s)))
