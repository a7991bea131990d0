"""`python -m bench.load [--jobs 200 --n 2000 --step-delay-ms 1 --within-s 10] [--quick]`: a load test.

Many jobs go through the real HTTP API (served by granian, as Reflex serves it here) to one worker
started as `make run` starts it; every job must succeed with a complete Kafka log, none lost or run
twice. Prints submit rate, drain time, job latency and each process's peak RSS, writes
bench/results/load.json (load-quick.json with --quick), and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.measure import percentiles
from bench.stack import BenchError, BenchStack
from settings import Settings, child_env, use_environment
from stack import services
from stack.processes import CeleryWorker, Child, ProcessError, asgi_command, free_port, http_ok, unique_name
from tasks import progress
from tasks.clients import Clients
from tasks.model import JobState, JobStatus, LineKind

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SAMPLE_EVERY_S = 0.2
TASK_RECEIVED = re.compile(r"Task tasks\.jobs\.run_job\[([0-9a-f-]{36})\] received")
TASK_SUCCEEDED = re.compile(r"Task tasks\.jobs\.run_job\[([0-9a-f-]{36})\] succeeded in [0-9.e-]+s: 'succeeded'")


# --- processes and their memory ----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc/<pid>/task/*/children."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                kids = [int(kid) for kid in children.read().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *descendants(kid)]
    return found


class RssSampler(threading.Thread):
    """Peak RSS of each process tree (its root and its descendants, summed and one by one)."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.roots: dict[str, int] = {}
        self.peaks: dict[str, dict[str, Any]] = {}
        self.samples = 0
        self._halt = threading.Event()

    def watch(self, name: str, pid: int) -> None:
        self.roots[name] = pid
        self.peaks[name] = {"total": 0, "parent": 0, "children": 0, "each_child": {}}

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_EVERY_S):
            self.sample()

    def sample(self) -> None:
        self.samples += 1
        for name, root in list(self.roots.items()):
            peak = self.peaks[name]
            parent = rss_kib(root)
            children = {kid: rss_kib(kid) for kid in descendants(root)}
            peak["parent"] = max(peak["parent"], parent)
            peak["children"] = max(peak["children"], sum(children.values()))
            peak["total"] = max(peak["total"], parent + sum(children.values()))
            for kid, kib in children.items():
                peak["each_child"][str(kid)] = max(peak["each_child"].get(str(kid), 0), kib)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(2)


# --- the run -----------------------------------------------------------------------------------------


# The last POST is sent at the end of the window; on a loaded machine its answer may take a while.
SUBMIT_SLACK_S = 2.0


def submit_all(
    port: int, jobs: int, n: int, within_s: float, auth: dict[str, str]
) -> tuple[dict[str, float], list[float], list[str]]:
    """POST `jobs` jobs, spread evenly over `within_s`; job id -> submit time, POST durations, errors."""
    submitted: dict[str, float] = {}
    post_s: list[float] = []
    errors: list[str] = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.monotonic()
    for i in range(jobs):
        time.sleep(max(start + i * within_s / jobs - time.monotonic(), 0))
        sent_at, began = time.time(), time.perf_counter()
        try:
            connection.request("POST", "/api/jobs", json.dumps({"n": n}), {"content-type": "application/json", **auth})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"POST {i}: {exc!r}")
            connection.close()
            continue
        post_s.append(time.perf_counter() - began)
        if response.status != 202:
            errors.append(f"POST {i}: {response.status} {body[:200]!r}")
            continue
        submitted[json.loads(body)["job_id"]] = sent_at
    connection.close()
    return submitted, post_s, errors


def wait_all_finished(c: Clients, job_ids: list[str], worker: Child, timeout_s: float) -> dict[str, JobState]:
    """The snapshots of the jobs, once every one is finished or the time is up."""
    keys = [progress.snapshot_key(job_id) for job_id in job_ids]
    deadline = time.monotonic() + timeout_s
    while True:
        raw = c.redis.mget(keys)
        states = {s.job_id: s for s in (JobState.from_json(r) for r in raw if r is not None)}  # type: ignore[union-attr]
        if len(states) == len(job_ids) and all(s.status.finished for s in states.values()):
            return states
        if worker.process.poll() is not None or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def log_problem(records: list[JobState], job_id: str, n: int) -> str | None:
    """Why a job's log is not steps 1..n once each in order then one `succeeded` record; None if it is."""
    if any(r.job_id != job_id or r.total != n for r in records):
        return "a record of another job or total"
    if not records or records[0].params is None or records[0].step != 0:
        return "it does not begin with the run's first record (step 0, with the params)"
    steps = [r.step for r in records[1:] if r.status is JobStatus.RUNNING]
    if steps != list(range(1, n + 1)):
        repeated = sum(count - 1 for count in Counter(steps).values())
        return f"{len(steps)} step records, {repeated} repeated, {n - len(set(steps))} missing or out of order"
    finals = records[len(steps) + 1 :]
    if [(r.status, r.step) for r in finals] != [(JobStatus.SUCCEEDED, n)]:
        return f"ends with {[(r.status.value, r.step) for r in finals]} instead of one succeeded record"
    return None


def check_results(
    c: Clients, submitted: dict[str, float], jobs: int, n: int, worker_log: str, port: int, auth: dict[str, str]
) -> tuple[dict[str, str], dict[str, JobState]]:
    """Each check's verdict ("ok" or what failed) and each job's final log record."""
    checks: dict[str, str] = {}
    finals: dict[str, JobState] = {}
    bad_logs = {}
    for job_id in submitted:
        records = [r for r in c.reader.records(job_id, frozenset({LineKind.STATE})) if isinstance(r, JobState)]
        problem = log_problem(records, job_id, n)
        if problem:
            bad_logs[job_id] = problem
        elif records:
            finals[job_id] = records[-1]
    checks["every job's Kafka log is complete"] = "ok" if not bad_logs else f"{len(bad_logs)} bad: {bad_logs}"

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    not_succeeded = []
    for job_id in submitted:
        connection.request("GET", f"/api/jobs/{job_id}", headers=auth)
        response = connection.getresponse()
        body = json.loads(response.read())
        if response.status != 200 or (body["status"], body["step"], body["total"]) != ("succeeded", n, n):
            not_succeeded.append((job_id, response.status, body))
    connection.close()
    checks["every job succeeded (read through the API)"] = (
        "ok" if not not_succeeded else f"{len(not_succeeded)} not: {not_succeeded[:5]}"
    )

    received = Counter(TASK_RECEIVED.findall(worker_log))
    succeeded = Counter(TASK_SUCCEEDED.findall(worker_log))
    twice = {job_id: count for job_id, count in received.items() if count != 1}
    unknown = set(received) - set(submitted)
    lost = set(submitted) - set(succeeded)
    checks["no job lost or run twice"] = (
        "ok"
        if not (twice or unknown or lost) and all(count == 1 for count in succeeded.values())
        else f"received more than once: {twice}; not submitted: {unknown}; never succeeded: {lost}"
    )
    keys = {key.decode() for key in c.redis.scan_iter(match=f"{progress.KEY_PREFIX}job:*", count=1000)}
    expected = {progress.snapshot_key(job_id) for job_id in submitted}
    leftovers = c.redis.llen("celery"), c.redis.hlen(progress.RUNNING_KEY)
    checks["nothing else created, nothing left queued or running"] = (
        "ok"
        if keys == expected and leftovers == (0, 0)
        else f"extra snapshots {keys - expected}; queued, running: {leftovers}"
    )
    checks[f"all {jobs} jobs accepted"] = "ok" if len(submitted) == jobs else f"only {len(submitted)} accepted"
    return checks, finals


def in_mib(peak: dict[str, Any]) -> dict[str, Any]:
    """A sampler's peaks (KiB) in MiB."""
    mib = {key: round(value / 1024, 1) for key, value in peak.items() if key != "each_child"}
    return {**mib, "each_child": {pid: round(kib / 1024, 1) for pid, kib in peak["each_child"].items()}}


def run(args: argparse.Namespace, settings: Settings, stop_stack: ExitStack) -> dict[str, Any]:
    started = time.perf_counter()
    # Redis and Kafka as the bench has them: its database emptied, the topics of its jobs deleted
    # from a reused broker at the end, what it started stopped.
    stack = stop_stack.enter_context(BenchStack(settings))
    c = stack.clients
    sampler = RssSampler()
    for running in stack.running:
        sampler.watch(running.service.name, running.pid)

    env = {"STEP_DELAY_MS": str(args.step_delay_ms), "PYTHONUNBUFFERED": "1"}
    # One worker with `make run`'s concurrency (from settings); SIGTERM is a cold shutdown.
    worker = CeleryWorker(unique_name("load", "load"), stack.log_dir, settings.worker_concurrency, env, wait=False)
    stop_stack.callback(worker.stop)
    port = free_port()
    api = Child("api", asgi_command("rxapp.api:api", port), stack.log_dir / "api.log", {**child_env(), **env})
    stop_stack.callback(api.stop)
    worker.wait_ready()
    api.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/openapi.json"), 30, "the API answering")
    sampler.watch("worker", worker.pid)
    sampler.watch("api", api.pid)
    sampler.sample()
    sampler.start()
    stop_stack.callback(sampler.stop)
    load_start = os.getloadavg()[0]

    first_submit = time.time()
    # One script, one API token: its limits are the load environment's (see settings.ENVIRONMENTS).
    auth = {"Authorization": f"Bearer {c.tokens.create(f'load-{uuid.uuid4().hex[:8]}')}"}
    submitted, post_s, post_errors = submit_all(port, args.jobs, args.n, args.within_s, auth)
    stack.job_ids += submitted
    submit_span_s = time.time() - first_submit
    ideal_s = args.jobs * args.n * args.step_delay_ms / 1000 / settings.worker_concurrency
    timeout_s = args.timeout_s or 2 * ideal_s + 60
    states = wait_all_finished(c, list(submitted), worker, timeout_s)
    sampler.stop()
    unfinished = len(submitted) - sum(s.status.finished for s in states.values())

    checks = {
        f"submitted within {args.within_s:g} s": "ok"
        if submit_span_s <= args.within_s + SUBMIT_SLACK_S and not post_errors
        else f"took {submit_span_s:.1f} s; errors: {post_errors[:5]}",
        f"every job finished within {timeout_s:.0f} s": "ok" if not unfinished else f"{unfinished} unfinished",
    }
    more_checks, finals = check_results(c, submitted, args.jobs, args.n, worker.log(), port, auth)
    checks |= more_checks
    latencies = [finals[job_id].ts - sent for job_id, sent in submitted.items() if job_id in finals]
    post_p50_s, post_p95_s = percentiles(post_s, 50, 95)
    latency_p50_s, latency_p95_s = percentiles(latencies, 50, 95)
    drain_s = max((state.ts for state in finals.values()), default=math.nan) - first_submit
    return {
        "ok": all(verdict == "ok" for verdict in checks.values()),
        "config": {
            "jobs": args.jobs,
            "n": args.n,
            "step_delay_ms": args.step_delay_ms,
            "within_s": args.within_s,
            "worker_concurrency": settings.worker_concurrency,
            "api_server": "granian (asgi, 1 worker)",
            "services": stack.describe(),
            "loadavg_1m_at_start": load_start,
        },
        "jobs_submitted": len(submitted),
        "jobs_succeeded_with_complete_log": len(finals),
        "submit_span_s": submit_span_s,
        "submit_rate_per_s": len(submitted) / submit_span_s if submit_span_s else math.nan,
        "post_p50_ms": post_p50_s * 1000,
        "post_p95_ms": post_p95_s * 1000,
        "drain_s": drain_s,
        "ideal_drain_s": ideal_s,
        "steps_per_s": len(finals) * args.n / drain_s if finals else 0.0,
        "job_latency_p50_s": latency_p50_s,
        "job_latency_p95_s": latency_p95_s,
        "job_latency_max_s": max(latencies, default=math.nan),
        "peak_rss_mib": {name: in_mib(peak) for name, peak in sampler.peaks.items()},
        "rss_samples": sampler.samples,
        "checks": checks,
        "runtime_s": time.perf_counter() - started,
    }


def table(results: dict[str, Any]) -> Iterator[str]:
    cfg = results["config"]
    yield f"load: {cfg['jobs']} jobs x N={cfg['n']:,}, {cfg['step_delay_ms']:g} ms/step"
    yield f"      one worker with a pool of {cfg['worker_concurrency']}, {cfg['api_server']}"
    yield f"  submit rate        {results['submit_rate_per_s']:8.1f} jobs/s  (POST p50 {results['post_p50_ms']:.1f} ms,"
    yield f"                                      p95 {results['post_p95_ms']:.1f} ms)"
    yield f"  drain              {results['drain_s']:8.1f} s       (ideal {results['ideal_drain_s']:.1f} s)"
    yield f"  job latency p50    {results['job_latency_p50_s']:8.2f} s"
    yield f"  job latency p95    {results['job_latency_p95_s']:8.2f} s"
    for name, peak in results["peak_rss_mib"].items():
        each = ", ".join(f"{mib:.0f}" for mib in peak["each_child"].values())
        detail = f"parent {peak['parent']:.0f} + children {peak['children']:.0f} [{each}]" if each else ""
        yield f"  peak RSS {name:<9} {peak['total']:8.1f} MiB   {detail}"
    for name, verdict in results["checks"].items():
        yield f"  {'PASS' if verdict == 'ok' else 'FAIL'} {name}" + ("" if verdict == "ok" else f": {verdict}")[:2000]
    yield f"  {'ALL CHECKS PASS' if results['ok'] else 'SOME CHECKS FAILED'} in {results['runtime_s']:.0f} s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs to submit (default 200)")
    parser.add_argument("--n", type=int, default=2000, help="steps per job (default 2000)")
    parser.add_argument("--step-delay-ms", type=float, default=1.0, help="work per step (default 1)")
    parser.add_argument("--within-s", type=float, default=10.0, help="submit every job within this (default 10)")
    parser.add_argument("--timeout-s", type=float, default=0, help="longest wait for the jobs (default 2x ideal+60)")
    parser.add_argument("--quick", action="store_true", help="40 jobs of N=200")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/load.json, load-quick.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.n = 40, 200
    if args.out is None:
        args.out = RESULTS_DIR / ("load-quick.json" if args.quick else "load.json")
    return args


def main(argv: list[str] | None = None) -> int:
    # Its own Redis database, broker port and run folder, unless the environment names others.
    settings = use_environment("load")
    args = parse_args(argv)
    # A SIGTERM (a test's timeout, Ctrl-C's sibling) still stops everything this run started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with ExitStack() as stop_stack:
            results = run(args, settings, stop_stack)
    except (BenchError, services.ServiceError, ProcessError) as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(table(results)))
    print(f"  results: {args.out}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
