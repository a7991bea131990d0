"""Token buckets: a burst of `burst` actions, then `rate_per_s` a second.

`Bucket` is one client's bucket in memory (a page's events, in the process that serves it);
`take` is one in Redis, shared by every web process (an owner's submits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import cast

import redis

# KEYS: the bucket. ARGV: rate per second, burst, now (s). Returns 0 when taken, else the
# milliseconds until a token is back. The bucket's hash expires once it would be full again.
TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('hmget', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
if tokens < 1 then
  return math.ceil((1 - tokens) / rate * 1000)
end
redis.call('hset', KEYS[1], 'tokens', tokens - 1, 'at', now)
redis.call('pexpire', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return 0
"""


def take(client: redis.Redis, key: str, rate_per_s: float, burst: int, now: float | None = None) -> float:
    """Take a token from the bucket at `key`: 0 when there was one, else the seconds to wait."""
    now = time.time() if now is None else now
    wait_ms = cast(int, client.eval(TAKE, 1, key, repr(rate_per_s), burst, repr(now)))
    return int(wait_ms) / 1000


@dataclass
class Bucket:
    """A bucket in memory: `allow()` takes a token if there is one."""

    rate_per_s: float
    burst: float
    tokens: float = field(init=False)
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
