"""Issue 15's figures: small jobs a second in both log layouts beside Celery's own no-op task on the same
workers, a 1,000-job soak (topics on the broker, the worker's memory), the history store's lag during a
burst, and a log page read from the store against the pooled Kafka reader.

`python -m bench.history [--quick]` runs this phase alone (on the bench's environment, or the one given).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import psutil
from confluent_kafka.admin import AdminClient

from bench.config import FULL, QUICK, Config
from bench.measure import Tick, cpu_s, summarize, time_calls
from bench.noop import NOOP_DONE_KEY, NOOP_TASK
from bench.stack import BenchError, BenchStack, add_broker_option, use_broker_option
from settings import Settings, load_settings, use_environment
from stack.processes import CeleryWorker, Child, app_env, unique_name
from tasks import progress, service
from tasks.clients import Clients
from tasks.history.store import HistoryStore
from tasks.joblog import JobLogAdmin
from tasks.model import JobState, JobStatus

LAYOUTS = ("topic", "shared")
# How often the bench looks for jobs (or no-op tasks) that have ended.
POLL_S = 0.01
# How often the store is asked which jobs it holds finished (the issue asks for ~50 ms).
STORE_POLL_S = 0.05
# Jobs each worker runs before its memory is first measured: the first jobs of a process allocate
# what every later one reuses (clients, caches).
WARM_UP_JOBS = 20
PAGE_SIZE = 1_000
# The no-op tasks and the jobs are sent in turns, this many of each: a machine whose speed
# drifts during the run (a shared one) slows both alike, and their ratio holds.
TURNS = 4
# How many of the jobs still pending `wait_finished` asks about at a time, and how it reads a snapshot
# (as JobState.to_json writes it) without parsing it.
WAIT_CHUNK = 50
FINISHED = re.compile(rb'"status":"(succeeded|failed|cancelled)"')
SUCCEEDED = b'"status":"succeeded"'
# Celery's line for each task that ends, in the worker's log: the task's name and its run time.
TASK_DONE = re.compile(r"Task (\S+)\[[0-9a-f-]+\] succeeded in ([0-9.e-]+)s")

# The keys this phase adds to the results (and "soak_jobs"), each by layout; None in a run that leaves
# the phase out (the quick one).
SOAK_KEYS = (
    "small_jobs_per_s",
    "noop_tasks_per_s",
    "soak_job_topics",
    "soak_worker_rss_mb",
    "soak_worker_rss_kb_per_job",
    "soak_task_ms",
    "soak_turns",
)
STORE_KEYS = ("store_lag_ms", "store_reported_lag_max", "log_page_ms")
KEYS = (*SOAK_KEYS, "soak_jobs", *STORE_KEYS)


def layout_env(layout: str, tag: str, step_delay_ms: float = 0) -> dict[str, str]:
    """A worker's and the bench's settings for one layout: topics named for this run only."""
    return {
        "JOB_LOG_LAYOUT": layout,
        "JOB_LOG_TOPIC": f"bench-{tag}-jobs",
        "KAFKA_TOPIC_PREFIX": f"bench-{tag}-",
        "STEP_DELAY_MS": f"{step_delay_ms:g}",
    }


@dataclass
class Turn:
    """A turn's rates, and the broker's CPU per job meanwhile (ms; None for a broker the bench did not
    start). A no-op task does not use the broker."""

    noop_tasks_per_s: float
    small_jobs_per_s: float
    broker_ms_per_job: float | None


class Layout:
    """One layout's corner of the broker, its clients, and a worker of 2 processes running both the
    jobs and the no-op task."""

    def __init__(self, stack: BenchStack, layout: str, step_delay_ms: float = 0, extra: dict[str, str] | None = None):
        self.stack = stack
        self.layout = layout
        self.env = layout_env(layout, uuid.uuid4().hex[:8], step_delay_ms) | (extra or {})
        self.settings: Settings = load_settings({**app_env(), **self.env})
        self.clients = Clients(self.settings)
        self.job_ids: list[str] = []
        self.worker = CeleryWorker(
            unique_name(f"history-{layout}", "bench"), stack.log_dir, concurrency=2, env=self.env, app="bench.noop"
        )

    def submit(self, count: int, n: int = 1) -> list[str]:
        ids = [service.submit_job("count", {"n": n}, self.clients).job_id for _ in range(count)]
        self.job_ids += ids
        return ids

    def wait_finished(self, job_ids: Sequence[str], timeout_s: float) -> float:
        """Wait until every job's snapshot says it succeeded; the time (perf_counter) it was seen.

        Cheap, so that the bench takes little of the CPU the workers run on: jobs end about in the
        order they were submitted, so only the first WAIT_CHUNK still pending are asked about, and a
        snapshot is parsed only when it has ended otherwise than succeeding."""
        pending = list(job_ids)
        deadline = time.perf_counter() + timeout_s
        while pending:
            pipe = self.clients.redis.pipeline(transaction=False)
            for job_id in pending[:WAIT_CHUNK]:
                pipe.get(progress.snapshot_key(job_id))
            raws = cast(list[bytes | None], pipe.execute())
            now = time.perf_counter()
            done = set()
            for job_id, raw in zip(pending, raws, strict=False):
                if raw is None or not FINISHED.search(raw):
                    continue
                if SUCCEEDED not in raw:
                    state = JobState.from_json(raw)
                    raise BenchError(f"job {job_id} ended {state.status.value}: {state.error}")
                done.add(job_id)
            pending = [job_id for job_id in pending if job_id not in done]
            if not pending:
                return now
            if now > deadline:
                raise BenchError(f"{len(pending)} {self.layout} jobs did not end within {timeout_s:.0f} s")
            time.sleep(POLL_S)
        return time.perf_counter()

    def jobs_per_s(self, count: int) -> float:
        """`count` one-step jobs submitted as fast as the bench can; first submit to the last one's end."""
        start = time.perf_counter()
        ids = self.submit(count)
        return count / (self.wait_finished(ids, 60 + count) - start)

    def noop_per_s(self, count: int) -> float:
        """`count` no-op tasks sent as fast as the bench can; first send to the last one's end."""
        redis = self.clients.redis
        redis.delete(NOOP_DONE_KEY)
        start = time.perf_counter()
        for _ in range(count):
            self.clients.celery.send_task(NOOP_TASK)
        deadline = start + 60 + count / 10
        while int(cast(bytes | None, redis.get(NOOP_DONE_KEY)) or 0) < count:
            if time.perf_counter() > deadline:
                raise BenchError(f"the no-op tasks did not end within {deadline - start:.0f} s")
            time.sleep(POLL_S)
        return count / (time.perf_counter() - start)

    def turn(self, noop_tasks: int, jobs: int) -> Turn:
        """No-op tasks, then one-step jobs, each sent at once."""
        broker = self.stack.broker_process()
        noop_per_s = self.noop_per_s(noop_tasks)
        broker_before = cpu_s(broker) if broker else 0.0
        jobs_per_s = self.jobs_per_s(jobs)
        broker_ms = (cpu_s(broker) - broker_before) * 1000 / jobs if broker else None
        return Turn(noop_per_s, jobs_per_s, broker_ms)

    def task_ms(self) -> dict[str, float]:
        """The median run time of a job's task and of a no-op task in the worker (its log's own figures)."""
        times: dict[str, list[float]] = {"tasks.jobs.run_job": [], NOOP_TASK: []}
        for name, seconds in TASK_DONE.findall(self.worker.log()):
            times.get(name, []).append(float(seconds) * 1000)
        return {"job": statistics.median(times["tasks.jobs.run_job"]), "noop": statistics.median(times[NOOP_TASK])}

    def worker_rss_mb(self) -> float:
        """The worker's resident memory, its pool processes included."""
        main = psutil.Process(self.worker.pid)
        return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)]) / 2**20

    def job_topics(self) -> int:
        """Topics on the broker that hold this run's job logs: each job's own, or the one shared topic."""
        topics = (
            AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap_servers}).list_topics(timeout=10).topics
        )
        if self.settings.shared_log:
            return int(self.settings.job_log_topic in topics)
        return sum(1 for topic in topics if topic.startswith(self.settings.kafka_topic_prefix))

    def close(self) -> None:
        """Stop the worker; on a broker the bench did not start, delete this layout's topics."""
        self.worker.stop()
        cached = self.clients.__dict__
        if "reader" in cached:  # closed before its topics go (see BenchStack.stop)
            cached.pop("reader").close()
        if any(r.service.name == "kafka" for r in self.stack.running):
            return
        if self.settings.shared_log:
            admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap_servers})
            for future in admin.delete_topics([self.settings.job_log_topic], request_timeout=10).values():
                future.result(timeout=10)
        else:
            for chunk in range(0, len(self.job_ids), 200):
                JobLogAdmin(self.settings).delete(self.job_ids[chunk : chunk + 200])


@contextmanager
def layout(
    stack: BenchStack, name: str, step_delay_ms: float = 0, extra: dict[str, str] | None = None
) -> Iterator[Layout]:
    """A layout's worker on an empty Redis database and, where the bench started the broker, an empty
    broker: an embedded broker's cost per request grows with the topics and records it holds, and the
    earlier phases (the other layout's 1,000 topics among them) would otherwise be measured too."""
    stack.flush_redis()
    stack.fresh_broker()
    started = Layout(stack, name, step_delay_ms, extra)
    try:
        yield started
    finally:
        started.close()


def throughput_and_soak(stack: BenchStack, cfg: Config, tick: Tick) -> dict[str, Any]:
    """Per layout, a fresh worker of 2 processes: `noop_tasks` no-op tasks and `soak_jobs` one-step jobs, in
    TURNS turns of each sent at once (their rates, the worker's memory before and after, the topics the
    jobs leave on the broker)."""
    figures: dict[str, dict[str, Any]] = {key: {} for key in SOAK_KEYS}
    for name in LAYOUTS:
        with layout(stack, name) as lay:
            lay.wait_finished(lay.submit(WARM_UP_JOBS), 120)
            lay.noop_per_s(WARM_UP_JOBS)
            rss_before = lay.worker_rss_mb()
            turns = [lay.turn(cfg.noop_tasks // TURNS, cfg.soak_jobs // TURNS) for _ in range(TURNS)]
            rss_after = lay.worker_rss_mb()
            # Each rate over all of its turns: the count over the time they took together.
            figures["noop_tasks_per_s"][name] = TURNS / sum(1 / turn.noop_tasks_per_s for turn in turns)
            figures["small_jobs_per_s"][name] = TURNS / sum(1 / turn.small_jobs_per_s for turn in turns)
            figures["soak_turns"][name] = [asdict(turn) for turn in turns]
            figures["soak_worker_rss_mb"][name] = {"before": rss_before, "after": rss_after}
            figures["soak_worker_rss_kb_per_job"][name] = (rss_after - rss_before) * 1024 / cfg.soak_jobs
            figures["soak_job_topics"][name] = lay.job_topics()
            figures["soak_task_ms"][name] = lay.task_ms()
        tick(f"small jobs, {name} layout")
    return {"soak_jobs": cfg.soak_jobs, **figures}


def history_consumer(lay: Layout, database_url: str) -> Child:
    env = {**app_env(), **lay.env, "HISTORY_DATABASE_URL": database_url}
    log_path = lay.stack.log_dir / f"history-{lay.env['KAFKA_TOPIC_PREFIX']}consumer.log"
    child = Child("history consumer", [sys.executable, "-m", "tasks.history", "consume"], log_path, env, True)
    child.wait_until(lambda: "job logs into" in child.log(), 60, "the history consumer's start")
    return child


def wait_stored(store: HistoryStore, job_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (state := store.job(job_id)) is None or not state.status.finished:
        if time.monotonic() > deadline:
            raise BenchError(f"the history store did not hold job {job_id}'s end within {timeout_s:.0f} s")
        time.sleep(STORE_POLL_S)


def store_lag(lay: Layout, store: HistoryStore, cfg: Config) -> dict[str, Any]:
    """A burst of jobs; for each, its final record's time to the first poll of the store that holds it
    finished. The consumers' own report of their lag, at its worst meanwhile."""
    ids = set(lay.submit(cfg.burst_jobs, cfg.burst_steps))
    lags_ms: dict[str, float] = {}
    behind, seconds = 0, 0.0
    # In the topic layout each new topic waits for a rebalance of the group: measured up to ~80 s behind.
    deadline = time.monotonic() + 300 + cfg.burst_jobs * cfg.burst_steps * (cfg.burst_step_delay_ms + 0.5) / 1000
    while len(lags_ms) < len(ids):
        if time.monotonic() > deadline:
            raise BenchError(f"the store held {len(lags_ms)} of the burst's {len(ids)} jobs' ends in time")
        finished = store.jobs(statuses=[JobStatus.SUCCEEDED, JobStatus.FAILED], limit=len(ids) + 10)
        now = time.time()
        for state in finished:
            if state.job_id in ids and state.job_id not in lags_ms:
                lags_ms[state.job_id] = (now - state.ts) * 1000
        lag = store.lag()
        behind, seconds = max(behind, lag.records_behind), max(seconds, lag.seconds_behind)
        time.sleep(STORE_POLL_S)
    figure = summarize(list(lags_ms.values()), (50, 99), "")
    return {"lag": figure, "reported": {"records_behind": behind, "seconds_behind": seconds}}


def page_reads(lay: Layout, store: HistoryStore, cfg: Config) -> dict[str, Any]:
    """One finished job of `page_job_steps` steps: pages of PAGE_SIZE records from the store and from
    Kafka (the pooled reader), `page_reads` of each, going through the job's pages in turn."""
    (job_id,) = lay.submit(1, cfg.page_job_steps)
    lay.wait_finished([job_id], 120)
    wait_stored(store, job_id, 120)
    reader = lay.clients.reader
    offsets, offset, end = [], 0, False
    while not end:
        page = reader.page(job_id, offset, PAGE_SIZE)
        if page.records != store.page(job_id, offset, PAGE_SIZE).records:
            raise BenchError(f"the store's page at {offset} of job {job_id} differs from Kafka's")
        offsets.append(offset)
        offset, end = page.next_offset, page.end
    records = store.count_records(job_id)
    turn = iter(range(10**9))

    def reads(read: Any) -> list[float]:
        return time_calls(lambda: read(job_id, offsets[next(turn) % len(offsets)], PAGE_SIZE), cfg.page_reads)

    figures = {
        "store": summarize(reads(store.page), (50, 95), ""),
        "kafka": summarize(reads(reader.page), (50, 95), ""),
    }
    return figures | {"records": records, "pages": len(offsets)}


def store_figures(stack: BenchStack, cfg: Config, tick: Tick) -> dict[str, Any]:
    """Per layout (the shared one first), a worker and a history consumer of their own (SQLite under
    RUN_DIR, a group of its own): the store's lag in a burst, then log pages from the store and Kafka."""
    figures: dict[str, dict[str, Any]] = {key: {} for key in STORE_KEYS}
    for name in reversed(LAYOUTS):
        tag = uuid.uuid4().hex[:8]
        database_url = f"sqlite:///{stack.settings.run_dir / f'history-bench-{tag}.db'}"
        extra = {"HISTORY_DATABASE_URL": database_url, "HISTORY_CONSUMER_GROUP": f"bench-history-{tag}"}
        with layout(stack, name, cfg.burst_step_delay_ms, extra) as lay:
            consumer = history_consumer(lay, database_url)
            store = HistoryStore(database_url)
            try:
                # The group has its partitions once it has stored a job: the burst does not wait for a join.
                (first,) = lay.submit(1, 10)
                wait_stored(store, first, 60)
                lag = store_lag(lay, store, cfg)
                tick(f"store lag, {name} layout")
                figures["log_page_ms"][name] = page_reads(lay, store, cfg)
                tick(f"log pages, {name} layout")
            finally:
                store.close()
                consumer.stop()
        figures["store_lag_ms"][name] = lag["lag"]
        figures["store_reported_lag_max"][name] = lag["reported"]
    return figures


TICKS = 3 * len(LAYOUTS)


def run(stack: BenchStack, cfg: Config, tick: Tick) -> dict[str, Any]:
    """Every figure of this phase; each key None when the run leaves the phase out (the quick run)."""
    if not cfg.history:
        return dict.fromkeys(KEYS)
    return throughput_and_soak(stack, cfg, tick) | store_figures(stack, cfg, tick)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Small jobs a second over no-op tasks a second on the same worker, per layout; a log page's p95
    from Kafka over the store's."""
    if results.get("small_jobs_per_s") is None:
        return {}
    jobs, noop, pages = results["small_jobs_per_s"], results["noop_tasks_per_s"], results["log_page_ms"]
    return {
        "small_jobs_vs_noop": {name: jobs[name] / noop[name] for name in jobs},
        "log_page_kafka_vs_store_p95": {name: p["kafka"]["p95"] / p["store"]["p95"] for name, p in pages.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the quick run's sizes (which the quick `python -m bench` leaves this phase out of)",
    )
    add_broker_option(parser)
    args = parser.parse_args(argv)
    use_broker_option(args)
    settings = use_environment("bench")
    cfg = QUICK if args.quick else FULL
    with BenchStack(settings) as stack:
        results = run(stack, replace(cfg, history=True), lambda done: print(done, file=sys.stderr))
        results["services"] = stack.describe()
        results["broker"] = stack.broker
    results["ratios"] = ratios(results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
