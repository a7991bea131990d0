"""The end-to-end series with Reflex's state in Redis (REFLEX_REDIS_URL), as production runs it: Reflex's
default number of backend processes at each page count, then the most pages with that default, 1 and 2
processes.

Their CPU is every process of the app's (bench.webapp.ReflexApp.serving), per update a page got, and
the updates the pages got a second: each also as a ratio to the in-memory single process at the same
page count in the same run, which the machine's load moves alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from bench.stack import BenchError, BenchStack
from bench.webapp import ReflexApp

# Reflex's state in Redis: its own database, emptied before, between and after the runs.
STATE_REDIS_DB = 7
# Backend processes (granian workers) the most pages are measured with, besides Reflex's default.
PROCESS_COUNTS = (1, 2)
# A phase whose pages did not all see their jobs (bench.e2e.watch).
PHASE_FAILED = (BenchError, TimeoutError)
# Runs an app's phases at these page counts (None: the config's), as bench.e2e.series runs them.
Series = Callable[[ReflexApp, tuple[int, ...] | None], dict[int, Any]]


def cpu_figures(run: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    """One run's cost per update, updates a second and step to page, and how they compare to `memory`."""
    cpu = run["phase"].cpu()
    step = run["latency"]["step_to_client"]
    baseline = memory["phase"].cpu()
    return {
        **cpu,
        "step_to_page_ms": {"p50": step["p50"], "p99": step["p99"]},
        "ms_per_update_vs_memory": cpu["backend_ms_per_update"] / baseline["backend_ms_per_update"],
        "updates_per_s_vs_memory": cpu["updates_per_s"] / baseline["updates_per_s"],
    }


def run(stack: BenchStack, memory_runs: dict[int, Any], series: Series) -> dict[str, Any]:
    """`e2e_latency_redis_state_ms` (step to page) and `e2e_publish_to_client_redis_state_ms` at each page
    count with Reflex's default processes; then `e2e_redis_state_cpu`: the most pages again with that
    default and with each of PROCESS_COUNTS."""
    base, db = stack.settings.redis_url.rsplit("/", 1)
    if db == str(STATE_REDIS_DB):
        raise BenchError(f"REDIS_URL uses database {db}, which the run with Reflex's state in Redis empties")
    state_url = f"{base}/{STATE_REDIS_DB}"
    state_redis = redis.Redis.from_url(state_url)
    most = max(memory_runs)
    by_processes: dict[str, Any] = {}
    try:
        state_redis.flushdb()
        with ReflexApp(stack, state_url) as web:
            try:
                runs = series(web, None)
            except PHASE_FAILED as exc:  # on a busy machine: said in latest.md, not fatal
                return {"e2e_redis_state_error": f"{type(exc).__name__}: {exc}"}
        for count in (None, *PROCESS_COUNTS):
            if str(count) in by_processes:  # Reflex's default is one of them
                continue
            state_redis.flushdb()
            with ReflexApp(stack, state_url, workers=count) as web:
                processes = len(web.workers())
                try:
                    figures = cpu_figures(series(web, (most,))[most], memory_runs[most])
                except PHASE_FAILED as exc:
                    figures = {"error": f"{type(exc).__name__}: {exc}"}
            by_processes[str(processes)] = figures | {"reflex_default": count is None}
    finally:
        state_redis.flushdb()
        state_redis.close()
    return {
        "e2e_latency_redis_state_ms": {str(c): run["latency"]["step_to_client"] for c, run in runs.items()},
        "e2e_publish_to_client_redis_state_ms": {
            str(c): run["latency"]["publish_to_client"] for c, run in runs.items()
        },
        "e2e_redis_state_cpu": {
            "pages": most,
            "by_processes": dict(sorted(by_processes.items(), key=lambda kv: int(kv[0]))),
        },
    }
