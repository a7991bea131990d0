"""Measuring tools the benchmarks share: latency summaries, a real Redis subscriber, a log counter."""

from __future__ import annotations

import contextlib
import math
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any

import psutil
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench.stack import BenchError
from settings import Settings

STEP_RE = re.compile(rb'"step":\s*(\d+)')

Tick = Callable[[str], None]
"""Called once per finished unit of work with what it was: drives the progress bar."""


@dataclass(frozen=True)
class Run:
    """One job of `n` steps: how long it took, the CPU time this process spent on it (its Kafka
    client's threads too; not the broker's or Redis'), and what its progress subscriber received."""

    n: int
    seconds: float
    cpu_seconds: float
    redis_msgs: int
    redis_peak_per_s: int
    job_id: str

    @property
    def steps_per_s(self) -> float:
        return self.n / self.seconds

    @property
    def redis_msgs_per_s(self) -> float:
        return self.redis_msgs / self.seconds

    @property
    def steps_per_cpu_s(self) -> float:
        return self.n / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        rates = {"steps_per_s": self.steps_per_s, "steps_per_cpu_s": self.steps_per_cpu_s}
        return asdict(self) | rates | {"redis_msgs_per_s": self.redis_msgs_per_s}


def best_run(runs: Sequence[Run]) -> Run:
    """The fastest run: other processes on the machine can only slow a run down (as timeit reasons)."""
    return max(runs, key=lambda r: r.steps_per_s)


def series_points(runs: dict[int, list[Run]]) -> list[dict[str, Any]]:
    """Per N: the median, best and worst throughput of its runs, their Redis traffic, every run."""
    return [
        {
            "n": n,
            "steps_per_s": statistics.median(r.steps_per_s for r in rs),
            "steps_per_s_min": min(r.steps_per_s for r in rs),
            "steps_per_s_max": max(r.steps_per_s for r in rs),
            "redis_msgs_per_s": statistics.median(r.redis_msgs_per_s for r in rs),
            "redis_peak_per_s": max(r.redis_peak_per_s for r in rs),
            "runs": [r.to_dict() for r in rs],
        }
        for n, rs in sorted(runs.items())
    ]


def repeat_runs(
    run: Callable[[int], Run], ns: Sequence[int], repeats: int, tick: Tick, label: str
) -> dict[int, list[Run]]:
    """`repeats` runs of `run(n)` at each N, a tick after each."""
    runs: dict[int, list[Run]] = {}
    for n in ns:
        runs[n] = []
        for attempt in range(repeats):
            runs[n].append(run(n))
            tick(f"{label} N={n:,} #{attempt + 1}")
    return runs


def percentiles(samples: Sequence[float], *ps: int) -> list[float]:
    """The `ps`-th percentiles (1 to 99) of the samples, each between its two nearest ranks (the
    inclusive method of statistics.quantiles); a lone sample is every percentile, none gives NaN."""
    if len(samples) < 2:
        return [samples[0] if samples else math.nan for _ in ps]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return [cuts[p - 1] for p in ps]


def summarize(samples_ms: Sequence[float], ps: tuple[int, ...] = (50, 95), suffix: str = "_ms") -> dict[str, float]:
    """The `ps`-th percentiles and the max of latency samples in milliseconds (keys "p50_ms", ...,
    "max_ms" with the default suffix), and how many samples there were."""
    if len(samples_ms) < 2:
        raise BenchError(f"a latency needs at least two samples, got {len(samples_ms)}")
    figures = {f"p{p}{suffix}": cut for p, cut in zip(ps, percentiles(samples_ms, *ps), strict=True)}
    return figures | {f"max{suffix}": max(samples_ms), "samples": len(samples_ms)}


def time_calls(call: Callable[[], object], count: int, before: Callable[[], object] | None = None) -> list[float]:
    """Milliseconds of each of `count` calls; `before` runs untimed ahead of each one."""
    samples = []
    for _ in range(count):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def peak_per_window(times: Sequence[float], window_s: float = 1.0) -> int:
    """The most messages that arrived within any `window_s` of each other."""
    peak, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window_s:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


@dataclass
class Received:
    """One message a subscriber got, stamped with time.perf_counter() on arrival."""

    at: float
    channel: str
    data: bytes


@dataclass
class Subscriber:
    """A real Redis subscriber in a thread: keeps every message on a channel (or pattern) it gets.

    `done` is set by the first message for which `until(message)` is true.
    """

    redis_url: str
    name: str
    until: Callable[[Received], bool]
    pattern: bool = False
    received: list[Received] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._client = redis.Redis.from_url(self.redis_url)
        self._pubsub = self._client.pubsub()
        self._thread = threading.Thread(target=self._listen, name=f"subscriber {self.name}", daemon=True)

    def __enter__(self) -> Subscriber:
        (self._pubsub.psubscribe if self.pattern else self._pubsub.subscribe)(self.name)
        # Wait for Redis to confirm: only then is no message published afterwards missed.
        deadline = time.monotonic() + 5
        while (message := self._pubsub.get_message(timeout=0.5)) is None or "subscribe" not in message["type"]:
            if time.monotonic() > deadline:
                raise BenchError(f"Redis did not confirm the subscription to {self.name}")
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is None:
                continue
            received = Received(time.perf_counter(), message["channel"].decode(), message["data"])
            self.received.append(received)
            if self.until(received):
                self.done.set()

    def rescan(self) -> None:
        """Apply `until` again to what already arrived (after the condition changed)."""
        if any(self.until(r) for r in list(self.received)):
            self.done.set()

    def wait(self, timeout_s: float) -> None:
        """Block until `done`; BenchError after timeout_s."""
        if not self.done.wait(timeout_s):
            raise BenchError(f"no final message on {self.name} within {timeout_s:.0f}s")

    def times(self) -> list[float]:
        return [r.at for r in self.received]


def finished_message(received: Received) -> bool:
    """A progress message that carries a finished status (the job's last one)."""
    return any(f'"status":"{s}"'.encode() in received.data for s in ("succeeded", "failed", "cancelled"))


@dataclass(frozen=True)
class LogCheck:
    """What reading a job's topic to its end found."""

    records: int
    steps_in_order: bool
    last_step: int
    last_value: bytes


def log_values(settings: Settings, topic: str, timeout_s: float = 60.0) -> Iterator[bytes]:
    """Every record value of a topic, read to the partition's end (not to the high watermark, which Tansu
    gets wrong after batched produce)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "jobstream-bench-verify",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while True:
            batch = consumer.consume(10_000, 0.05)
            if not batch and time.monotonic() > deadline:
                raise BenchError(f"reading {topic} did not reach its end within {timeout_s:.0f}s")
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise BenchError(f"reading {topic}: {error.str()}")
                yield msg.value() or b""
    finally:
        consumer.close()


def read_log(settings: Settings, topic: str, timeout_s: float = 60.0, first_record: bool = True) -> LogCheck:
    """Read a whole topic, counting records and checking that the steps run 1, 2, 3... in order,
    with one repeat allowed: the final record carries the last step's number again. With
    `first_record`, the log begins with a run's first record (step 0, the params), not a step."""
    records, step, repeated_at, in_order, last = 0, 0, -1, True, b""
    for last in log_values(settings, topic, timeout_s):
        if first_record and records == 0:
            in_order = b'"params"' in last and STEP_RE.search(last) is not None
            records += 1
            continue
        match = STEP_RE.search(last)
        new_step = int(match.group(1)) if match else -1
        if new_step == step and repeated_at == -1:
            repeated_at = records
        else:
            in_order = in_order and new_step == step + 1
        step = new_step
        records += 1
    in_order = in_order and records > 0 and repeated_at in (-1, records - 1)
    return LogCheck(records, in_order, step, last)


def check_job_log(settings: Settings, topic: str, n: int, first_record: bool = True) -> LogCheck:
    """A complete job log: its first record (unless the seed's loop wrote it), steps 1..n in
    order, then one final `succeeded` record at step n."""
    log = read_log(settings, topic, first_record=first_record)
    complete = log.records == n + 1 + first_record and log.steps_in_order and log.last_step == n
    if not complete or b'"succeeded"' not in log.last_value:
        raise BenchError(
            f"{topic}: expected steps 1..{n} in order and a final succeeded record, found {log.records} records "
            f"(in order: {log.steps_in_order}, last: {log.last_value[:120]!r})"
        )
    return log


def cpu_s(*procs: psutil.Process) -> float:
    """User and system CPU seconds of these processes together (0 for one that has gone)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total
