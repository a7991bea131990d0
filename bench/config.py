"""How much each benchmark does: the full run, and the quick one that a test can afford."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """Sizes of one bench run. The largest of `ns` is the headline throughput's N."""

    quick: bool
    ns: tuple[int, ...]
    repeats: int
    baseline_ns: tuple[int, ...]
    submits: int
    get_job_redis_calls: int
    get_job_kafka_calls: int
    recovery_reads: int
    worker_n: int
    small_jobs: int

    @property
    def n(self) -> int:
        return max(self.ns)

    @property
    def baseline_n(self) -> int:
        return max(self.baseline_ns)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


FULL = Config(
    quick=False,
    ns=(1_000, 10_000, 100_000, 1_000_000),
    repeats=3,
    baseline_ns=(100, 1_000, 5_000),
    submits=300,
    get_job_redis_calls=1_000,
    get_job_kafka_calls=200,
    recovery_reads=100,
    worker_n=1_000_000,
    small_jobs=5,
)

QUICK = Config(
    quick=True,
    ns=(1_000, 10_000, 100_000),
    repeats=3,
    baseline_ns=(100, 1_000, 2_000),
    submits=100,
    get_job_redis_calls=300,
    get_job_kafka_calls=50,
    recovery_reads=30,
    worker_n=100_000,
    small_jobs=3,
)
