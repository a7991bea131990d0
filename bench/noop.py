"""The bench workers' Celery app: Jobstream's worker app plus Celery's own no-op task, the baseline a
small job is compared with (`celery -A bench.noop worker` runs both on the same processes)."""

from __future__ import annotations

from tasks import progress
from tasks.clients import clients
from tasks.worker.celery_app import app

NOOP_TASK = "bench.noop"
# How many no-op tasks have ended: the bench's only way to see the last one end (no result backend).
NOOP_DONE_KEY = f"{progress.KEY_PREFIX}bench:noop-done"


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Nothing but one Redis INCR, so that the bench sees it end."""
    clients().redis.incr(NOOP_DONE_KEY)
