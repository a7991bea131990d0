"""The usual Python way, for comparison: a Celery task reports each step with `update_state` into the
Redis result backend (the celery-progress pattern), and each page polls an HTTP endpoint every 500 ms
that reads `AsyncResult(task_id).info`.

`celery -A bench.peer worker` runs the task; granian serves `bench.peer:web`. Measured like
Jobstream (bench.e2e): same jobs, same client counts, delays against each step's time.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from contextlib import ExitStack
from typing import Any

import aiohttp
from celery import Celery, Task
from celery.result import AsyncResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.arrivals import Arrival, StepTimes, job_seconds, summarize
from bench.config import Config
from bench.measure import Tick
from bench.stack import BenchError, BenchStack
from settings import get_settings
from stack.processes import CeleryWorker, Child, asgi_command, free_port, http_ok, unique_name

POLL_INTERVAL_S = 0.5
# Its own queue: Jobstream's worker takes Celery's default queue in the same Redis database.
QUEUE = "bench-peer"
# Measurement only, not part of the pattern: every step's time, written once when the task ends.
STEP_TIMES_KEY = "bench-peer:step-times:{}"

app = Celery("peer")
# Read from the settings when the app is first used, not at import: `python -m bench` imports this
# module before it chooses its environment.
app.add_defaults(lambda: {"broker_url": get_settings().redis_url, "result_backend": get_settings().redis_url})
app.conf.update(
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=3600,
)


@app.task(bind=True, name="bench.peer.count")
def count(self: Task, total: int, delay_ms: float) -> dict[str, Any]:
    """The demo job the usual way: sleep per step, report every step as PROGRESS."""
    times = []
    for step in range(1, total + 1):
        time.sleep(delay_ms / 1000)
        ts = time.time()
        times.append(ts)
        self.update_state(state="PROGRESS", meta={"step": step, "total": total, "ts": ts})
    self.backend.client.set(STEP_TIMES_KEY.format(self.request.id), json.dumps(times), ex=3600)
    return {"step": total, "total": total, "ts": time.time()}


def progress(request: Request) -> JSONResponse:
    """What a celery-progress endpoint returns: the task's state and its progress meta."""
    result = AsyncResult(request.path_params["task_id"], app=app)
    info = result.info
    return JSONResponse({"state": result.state, "info": info if isinstance(info, dict) else None})


web = Starlette(routes=[Route("/progress/{task_id}", progress)])


async def poll(session: aiohttp.ClientSession, url: str, timeout_s: float) -> list[Arrival]:
    """One page: a request every POLL_INTERVAL_S (from a random phase) until the task has ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    next_at = loop.time() + random.uniform(0, POLL_INTERVAL_S)
    arrivals: list[Arrival] = []
    while loop.time() < deadline:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        next_at += POLL_INTERVAL_S
        async with session.get(url) as response:
            body = await response.json()
        info = body["info"] or {}
        if "step" in info:
            arrivals.append(Arrival(time.time(), int(info["step"]), body["state"] == "SUCCESS"))
        if body["state"] in {"SUCCESS", "FAILURE"}:
            return arrivals
    raise BenchError(f"polling {url} did not see the task end within {timeout_s:.0f}s")


async def poll_all(port: int, task_ids: list[str], clients: int, timeout_s: float) -> list[list[Arrival]]:
    """`clients` pages, page i polling task i mod len(task_ids)."""
    connector = aiohttp.TCPConnector(limit=0)  # each page keeps its own connection, as browsers do
    async with aiohttp.ClientSession(connector=connector) as session:
        urls = [f"http://127.0.0.1:{port}/progress/{task_ids[i % len(task_ids)]}" for i in range(clients)]
        return await asyncio.gather(*(poll(session, url, timeout_s) for url in urls))


def step_times(task_id: str, timeout_s: float) -> StepTimes:
    """(step, finished) -> when, from the task's own record and its result."""
    final = AsyncResult(task_id, app=app).get(timeout=timeout_s)
    raw = app.backend.client.get(STEP_TIMES_KEY.format(task_id))
    times: dict[tuple[int, bool], float] = {(step, False): ts for step, ts in enumerate(json.loads(raw), start=1)}
    times[(final["step"], True)] = final["ts"]
    return times


def run(stack: BenchStack, cfg: Config, tick: Tick) -> dict[str, Any]:
    """The peer at each client count: `peer_e2e_latency_ms` (step to page), `peer_publish_to_client_ms`
    (publish to page: each poll's state against its step's time), `peer_job_seconds`."""
    stack.flush_redis()
    keys = ("peer_e2e_latency_ms", "peer_publish_to_client_ms", "peer_job_seconds")
    results: dict[str, dict[str, Any]] = {key: {} for key in keys}
    with ExitStack() as stop:
        worker = CeleryWorker(unique_name("bench", "bench"), stack.log_dir, cfg.e2e_jobs, app="bench.peer", wait=False)
        stop.callback(worker.stop)
        port = free_port()
        server = Child("peer-web", asgi_command("bench.peer:web", port), stack.log_dir / "peer-web.log")
        stop.callback(server.stop)
        server.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/progress/{uuid.uuid4()}"), 30, "the peer's server")
        worker.wait_ready()
        tick("peer started")
        for clients in cfg.e2e_clients:
            task_ids = [count.delay(cfg.e2e_n, cfg.e2e_step_delay_ms).id for _ in range(min(clients, cfg.e2e_jobs))]
            pages = asyncio.run(poll_all(port, task_ids, clients, cfg.e2e_timeout_s))
            times = {task_id: step_times(task_id, cfg.e2e_timeout_s) for task_id in task_ids}
            latency = summarize((pages[i], times[task_ids[i % len(task_ids)]]) for i in range(clients))
            results["peer_e2e_latency_ms"][str(clients)] = latency["step_to_client"]
            results["peer_publish_to_client_ms"][str(clients)] = latency["publish_to_client"]
            results["peer_job_seconds"][str(clients)] = job_seconds(times.values())
            tick(f"peer {clients} pages")
    return results
