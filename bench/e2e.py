"""End-to-end latency of Jobstream: a step taken in a Celery worker to its state at pages connected over
Reflex's WebSocket (`reflex run --env prod`), with 1 to 200 pages; the backend's memory and Redis
connections as pages join; one real browser for comparison.

A few jobs run at once (`e2e_jobs`, one per worker process) and the pages share them round-robin,
each page watching one job. Step times come from each job's Kafka log afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from celery import Celery

from bench import browser, e2e_redis
from bench.arrivals import StepTimes, job_seconds, summarize
from bench.config import Config
from bench.measure import Tick, cpu_s, log_values
from bench.pageclient import PageClient
from bench.profile import Recording
from bench.stack import BenchError, BenchStack
from bench.webapp import ReflexApp
from rxapp.session import COOKIE_NAME, cookie_value
from stack.access import kept_secret
from stack.processes import CeleryWorker, unique_name
from tasks import service
from tasks.joblog import topic_name
from tasks.model import JobState

CONNECTS_AT_ONCE = 25
SAMPLE_EVERY_S = 0.5
QUEUE = "celery"  # the worker's queue: Celery's default
STATE_MANAGER = "memory (rxconfig.py's choice without REFLEX_REDIS_URL)"


@dataclass
class JobGate:
    """Keeps a phase's jobs in the queue until every page shows them: the worker stops taking jobs from its
    queue (Celery's cancel_consumer) and takes them again on `release`. A tab that loads after its job
    ended never sees it (a finished job is shown once more to its owner's first page only), and on a busy
    machine 200 pages can take longer to connect than a job takes to run."""

    celery: Celery
    worker: str

    def hold(self) -> None:
        self._control("cancel_consumer")

    def release(self) -> None:
        self._control("add_consumer")

    def _control(self, command: str) -> None:
        replies = getattr(self.celery.control, command)(QUEUE, destination=[self.worker], reply=True, timeout=10)
        if not replies:
            raise BenchError(f"the worker {self.worker} did not answer {command}")


@dataclass
class Phase:
    """One client count: every page's arrivals, and the backend's RSS and Redis connections meanwhile."""

    pages: list[PageClient]
    rss_before_kib: int
    rss_kib: list[int]
    redis_connections: list[int]
    backend_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0
    watched_s: float = 0.0  # from the first page's connect to every job's end at its page
    profile: Recording | None = None  # py-spy's samples of the backend meanwhile (bench.profile)

    def cpu(self) -> dict[str, float]:
        """CPU seconds of the backend and of this process (the scripted pages), the backend's per update,
        and the updates the pages got a second while they watched."""
        updates = sum(len(page.arrivals) for page in self.pages)
        return {
            "backend_s": self.backend_cpu_s,
            "pages_s": self.bench_cpu_s,
            "backend_ms_per_update": 1000 * self.backend_cpu_s / updates,
            "updates_per_s": updates / self.watched_s if self.watched_s else 0.0,
        }


def step_times(stack: BenchStack, job_id: str) -> StepTimes:
    """(step, finished) -> the record's ts, from the job's Kafka log."""
    times: dict[tuple[int, bool], float] = {}
    for value in log_values(stack.settings, topic_name(stack.settings, job_id)):
        record = JobState.from_json(value)
        times.setdefault((record.step, record.status.finished), record.ts)
    return times


def submit(stack: BenchStack, count: int, n: int) -> dict[str, str]:
    """`count` jobs, each of a browser of its own: job id -> its browser's session cookie."""
    secret = kept_secret(stack.settings)
    sessions = {}
    for _ in range(count):
        owner = f"b-{uuid.uuid4().hex}"
        job_id = service.submit_job("count", {"n": n}, stack.clients, owner).job_id
        sessions[job_id] = f"{COOKIE_NAME}={cookie_value(owner, secret)}"
    stack.job_ids += sessions
    return sessions


async def watch(
    web: ReflexApp,
    sessions: dict[str, str],
    clients: int,
    timeout_s: float,
    sample: bool,
    profile: Path | None = None,
    opened: Callable[[], None] = lambda: None,
) -> Phase:
    """Connect `clients` pages (page i is a tab of the browser of job i mod len(sessions)), call `opened`
    once every page shows its job, and keep them until every job ended. The backend's CPU meanwhile: its
    serving process's (every process of the app's with several); with `profile`, py-spy's samples of that
    process, recorded there."""
    job_ids = list(sessions)
    pages = [
        PageClient(web.url, job_ids[i % len(job_ids)], sessions[job_ids[i % len(job_ids)]]) for i in range(clients)
    ]
    phase = Phase(pages, await asyncio.to_thread(web.rss_kib) if sample else 0, [], [])
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def open_page(page: PageClient) -> None:
        async with gate:
            await page.open()
            await asyncio.wait_for(page.watching.wait(), timeout_s)

    backends, bench = web.serving(), psutil.Process()
    backend_before, bench_before = cpu_s(*backends), cpu_s(bench)
    phase.profile = Recording(backends[0].pid, profile) if profile else None
    try:
        with phase.profile or contextlib.nullcontext():
            started = time.monotonic()
            await asyncio.gather(*(open_page(page) for page in pages))
            await asyncio.to_thread(opened)
            await ended_at_pages(web, pages, phase, timeout_s, sample)
            phase.watched_s = time.monotonic() - started
    finally:
        await asyncio.gather(*(page.close() for page in pages), return_exceptions=True)
    phase.backend_cpu_s, phase.bench_cpu_s = cpu_s(*backends) - backend_before, cpu_s(bench) - bench_before
    return phase


async def ended_at_pages(web: ReflexApp, pages: list[PageClient], phase: Phase, timeout_s: float, sample: bool) -> None:
    """Wait until every page saw its job end, sampling the backend's RSS and Redis connections meanwhile."""
    ended = asyncio.ensure_future(asyncio.gather(*(page.finished.wait() for page in pages)))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not ended.done():
        if asyncio.get_running_loop().time() > deadline:
            ended.cancel()
            missing = sum(not page.finished.is_set() for page in pages)
            raise BenchError(f"{missing} of {len(pages)} pages did not see their job finish within {timeout_s:.0f}s")
        if sample:
            phase.rss_kib.append(await asyncio.to_thread(web.rss_kib))
            phase.redis_connections.append(await asyncio.to_thread(web.redis_connections))
        await asyncio.wait({ended}, timeout=SAMPLE_EVERY_S)


def latency(stack: BenchStack, phase: Phase) -> dict[str, Any]:
    """Both delays over the phase's pages, and how long its jobs took."""
    times = {job_id: step_times(stack, job_id) for job_id in {page.job_id for page in phase.pages}}
    return summarize((page.arrivals, times[page.job_id]) for page in phase.pages) | {
        "job_s": job_seconds(times.values())
    }


def series(
    stack: BenchStack,
    web: ReflexApp,
    cfg: Config,
    tick: Tick,
    gate: JobGate,
    sample: bool = True,
    counts: tuple[int, ...] | None = None,
    profile: Path | None = None,
) -> dict[int, Any]:
    """Each client count in turn (`counts`, else the config's), its jobs held in the queue until every page
    shows them: its latencies and the backend's CPU, and (when `sample`) the backend's RSS and Redis
    connections; with `profile`, py-spy's samples of the backend, recorded into that file."""
    results: dict[int, Any] = {}
    counts = counts or cfg.e2e_clients
    for clients in counts:
        gate.hold()
        try:
            sessions = submit(stack, min(clients, cfg.e2e_jobs), cfg.e2e_n)
            phase = asyncio.run(watch(web, sessions, clients, cfg.e2e_timeout_s, sample, profile, gate.release))
        finally:
            gate.release()
        results[clients] = {"latency": latency(stack, phase), "phase": phase}
        tick(f"e2e {clients} pages")
    return results


def browser_check(stack: BenchStack, web: ReflexApp, cfg: Config) -> dict[str, Any]:
    """One job started and watched by one headless Chromium; both delays of the card's changes in the DOM."""
    job_id, arrivals = asyncio.run(browser.submit_and_watch(web.url, cfg.e2e_n, cfg.e2e_timeout_s))
    stack.job_ids.append(job_id)
    return summarize([(arrivals, step_times(stack, job_id))])


def by_clients(runs: dict[int, Any], pick: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    return {str(clients): pick(run) for clients, run in runs.items()}


def rss_of(run: dict[str, Any]) -> dict[str, float]:
    phase: Phase = run["phase"]
    return {"before": phase.rss_before_kib, "with_pages": statistics.median(phase.rss_kib)}


def cores_at_full_rate(runs: dict[int, Any], interval_s: float) -> dict[str, float]:
    """Backend cores that every coalesced message to every page would take, at the per-update cost measured:
    whether a client count can be served at full rate on this machine at all."""
    return {
        str(clients): clients / interval_s * run["phase"].cpu()["backend_ms_per_update"] / 1000
        for clients, run in runs.items()
    }


def pages_per_core(runs: dict[int, Any], interval_s: float) -> dict[str, float]:
    """Pages one backend core serves at full rate (a running job's every coalesced message, one per
    PROGRESS_INTERVAL_MS) at the cost per update measured with that many pages connected."""
    costs = {clients: run["phase"].cpu()["backend_ms_per_update"] for clients, run in runs.items()}
    return {str(clients): 1000 * interval_s / ms for clients, ms in costs.items() if ms > 0}


def memory_and_connections(runs: dict[int, Any]) -> dict[str, Any]:
    """RSS per page at the most pages; the backend's Redis connections at each count, and their growth
    from the fewest pages to the most."""
    fewest, most = min(runs), max(runs)
    rss = rss_of(runs[most])
    connections = by_clients(runs, lambda run: max(run["phase"].redis_connections))
    return {
        "backend_rss_per_client_kb": (rss["with_pages"] - rss["before"]) / most,
        "backend_rss_kib": by_clients(runs, rss_of),
        "redis_connections_by_clients": connections,
        f"redis_connections_at_{fewest}_client": connections[str(fewest)],
        f"redis_connections_at_{most}_clients": connections[str(most)],
        "redis_connections_growth": connections[str(most)] - connections[str(fewest)],
    }


def backend_profile(
    stack: BenchStack, web: ReflexApp, cfg: Config, tick: Tick, gate: JobGate, runs: dict[int, Any]
) -> dict[str, Any]:
    """py-spy's breakdown of the backend at the most pages, each bucket's share priced at the cost per update
    of the phase measured without it. Recorded in a phase of its own: the sampler takes CPU that a small
    machine's backend would miss. A phase that does not end is said, not fatal."""
    most = max(runs)
    figures: dict[str, Any] = {"pages": most}
    try:
        out = stack.log_dir / "backend-profile.txt"
        [profiled] = series(stack, web, cfg, tick, gate, counts=(most,), profile=out).values()
    except e2e_redis.PHASE_FAILED as exc:
        return figures | {"error": f"the profiled phase did not end ({type(exc).__name__}: {exc})"}
    phase: Phase = profiled["phase"]
    assert phase.profile is not None
    figures["profiled_phase_ms_per_update"] = phase.cpu()["backend_ms_per_update"]
    return figures | phase.profile.result(runs[most]["phase"].cpu()["backend_ms_per_update"])


def run(stack: BenchStack, cfg: Config, tick: Tick) -> dict[str, Any]:
    """The Jobstream side of the end-to-end benchmark: every key it adds to the results."""
    stack.flush_redis()
    # The worker starts while Reflex builds the page.
    env = {"STEP_DELAY_MS": str(cfg.e2e_step_delay_ms)}
    worker = CeleryWorker(unique_name("bench", "bench"), stack.log_dir, cfg.e2e_jobs, env, wait=False)
    try:
        with ReflexApp(stack) as web:
            worker.wait_ready()
            tick("Reflex app started")
            gate = JobGate(stack.clients.celery, worker.name)
            runs = series(stack, web, cfg, tick, gate)
            profile = backend_profile(stack, web, cfg, tick, gate, runs) if cfg.e2e_profile else None
            browser_latency = browser_check(stack, web, cfg)
            tick("e2e browser")
        results = {
            "progress_interval_ms": stack.settings.progress_interval_ms,
            "e2e_state_manager": STATE_MANAGER,
            # Step to page (issue 6) and publish to page (issue 4): bench.arrivals.
            "e2e_latency_ms": by_clients(runs, lambda run: run["latency"]["step_to_client"]),
            "e2e_publish_to_client_ms": by_clients(runs, lambda run: run["latency"]["publish_to_client"]),
            # Issue 17: a job's end to its pages (never paced), and the fewest updates a page got a second.
            "e2e_status_change_ms": by_clients(runs, lambda run: run["latency"]["status_change"]),
            "e2e_min_updates_per_s": by_clients(runs, lambda run: run["latency"]["min_updates_per_s"]),
            "e2e_job_seconds": by_clients(runs, lambda run: run["latency"]["job_s"]),
            "e2e_cpu": by_clients(runs, lambda run: run["phase"].cpu()),
            "e2e_backend_cores_at_full_rate": cores_at_full_rate(runs, stack.settings.progress_interval_s),
            "e2e_pages_per_core_at_full_rate": pages_per_core(runs, stack.settings.progress_interval_s),
            "e2e_latency_browser_ms": browser_latency["step_to_client"],
            "e2e_publish_to_client_browser_ms": browser_latency["publish_to_client"],
            "e2e_status_change_browser_ms": browser_latency["status_change"],
            **memory_and_connections(runs),
        }
        if profile is not None:
            results["e2e_backend_profile"] = profile
        if cfg.e2e_redis_state:
            results |= e2e_redis.run(
                stack, runs, lambda web, counts: series(stack, web, cfg, tick, gate, False, counts)
            )
    finally:
        worker.stop()
    return results
