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
    # End to end (bench.e2e, bench.peer): pages connected at once, and the jobs they watch. `e2e_jobs`
    # jobs of `e2e_n` steps run at once (one per worker process); pages share them round-robin.
    e2e_clients: tuple[int, ...]
    e2e_n: int
    e2e_step_delay_ms: float
    e2e_jobs: int
    e2e_redis_state: bool  # also run the series with Reflex's state in Redis (bench.e2e_redis)
    e2e_profile: bool  # py-spy's breakdown of the backend at the most pages (bench.profile)
    log_lines: int  # lines the printing job prints (bench.lines)
    # The history phase (bench.history): left out of the quick run, its keys reported as not measured.
    history: bool
    noop_tasks: int  # Celery's no-op task, sent at once to each layout's worker
    soak_jobs: int  # one-step jobs sent at once to each layout's worker: their rate, memory, topics
    burst_jobs: int  # jobs at once while the history store's lag is measured
    burst_steps: int
    burst_step_delay_ms: float
    page_job_steps: int  # the job whose log pages are read from the store and from Kafka
    page_reads: int
    # The operator's console (bench.ops): finished jobs in its store, and the timed loads and filter changes
    # (each also for the empty store's loads). 0 jobs leaves the phase out.
    ops_jobs: int
    ops_repeats: int

    @property
    def n(self) -> int:
        return max(self.ns)

    @property
    def baseline_n(self) -> int:
        return max(self.baseline_ns)

    @property
    def e2e_timeout_s(self) -> float:
        """How long one end-to-end phase may take: its jobs' expected time (a sleep overshoots its 2 ms by
        ~0.4 ms here) five times over, for a loaded machine and the peer's slower steps, plus a minute."""
        return 5 * self.e2e_n * (self.e2e_step_delay_ms + 0.4) / 1000 + 60

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
    e2e_clients=(1, 50, 200),
    e2e_n=5_000,
    e2e_step_delay_ms=2.0,
    e2e_jobs=4,
    e2e_redis_state=True,
    e2e_profile=True,
    log_lines=200_000,
    history=True,
    noop_tasks=2_000,
    soak_jobs=1_000,
    burst_jobs=200,
    burst_steps=300,
    burst_step_delay_ms=0.5,
    page_job_steps=5_000,
    page_reads=200,
    ops_jobs=10_000,
    ops_repeats=20,
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
    e2e_clients=(1, 10, 50),
    e2e_n=600,
    e2e_step_delay_ms=2.0,
    e2e_jobs=4,
    e2e_redis_state=False,
    e2e_profile=False,
    log_lines=50_000,
    history=False,
    noop_tasks=400,
    soak_jobs=200,
    burst_jobs=40,
    burst_steps=100,
    burst_step_delay_ms=0.5,
    page_job_steps=2_000,
    page_reads=50,
    ops_jobs=1_000,
    ops_repeats=5,
)
