"""A cap on the events one page sends: EVENTS_PER_SECOND, in bursts of twice as many.

A page sends a handful of events a second at most (a click, a form, a dialog); a client that sends
more is dropped silently past its bucket, so one socket cannot keep a backend process busy.
"""

from __future__ import annotations

import time
from typing import Any

from reflex.middleware import Middleware
from reflex.state import StateUpdate

from settings import Settings
from tasks.ratelimit import Bucket

# Buckets of pages not heard from for this long are forgotten (a full bucket is no bucket).
IDLE_S = 60.0


class EventRateLimit(Middleware):
    """Drops a page's events past its bucket, before any handler runs."""

    def __init__(self, settings: Settings) -> None:
        self.rate_per_s = settings.events_per_second
        self.buckets: dict[str, Bucket] = {}
        self.swept_at = time.monotonic()

    async def preprocess(self, app: Any, state: Any, event: Any) -> Any:
        now = time.monotonic()
        if now - self.swept_at > IDLE_S:
            self.buckets = {token: b for token, b in self.buckets.items() if now - b.at < IDLE_S}
            self.swept_at = now
        token = state.router.session.client_token
        bucket = self.buckets.get(token)
        if bucket is None:
            bucket = self.buckets[token] = Bucket(self.rate_per_s, 2 * self.rate_per_s)
        return None if bucket.allow(now) else StateUpdate()  # an update of nothing: the event is dropped
