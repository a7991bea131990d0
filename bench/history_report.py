"""The report's section on the log layouts and the history store (bench.history), and its targets."""

from __future__ import annotations

from typing import Any

from bench.targets import Target

# Issue 15: a one-step job end to end at no less than half the rate of Celery's no-op task.
MIN_SMALL_JOBS_VS_NOOP = 0.5


def targets(results: dict[str, Any]) -> list[Target]:
    """One target per layout measured (none in a run that left the phase out)."""
    if results.get("small_jobs_per_s") is None:
        return []
    return [
        Target(f"ratios.small_jobs_vs_noop.{name}", ">=", MIN_SMALL_JOBS_VS_NOOP, "x the no-op task")
        for name in results["small_jobs_per_s"]
    ]


def _passed(results: dict[str, Any], target: Target) -> str:
    value = results["ratios"]["small_jobs_vs_noop"][target.key.rsplit(".", 1)[1]]
    return "PASS" if target.passed(value) else "FAIL"


def markdown(results: dict[str, Any]) -> list[str]:
    """The section's lines; a line saying it was not measured in a run that left it out."""
    header = ["", "## Log layouts and the history store", ""]
    if results.get("small_jobs_per_s") is None:
        return [*header, "Not measured in this run (the quick run leaves it out: `python -m bench.history`)."]
    cfg, r = results["config"], results["ratios"]
    turn_count = len(next(iter(results["soak_turns"].values())))
    jobs, noop = results["small_jobs_per_s"], results["noop_tasks_per_s"]
    rss, per_job, topics = (
        results["soak_worker_rss_mb"],
        results["soak_worker_rss_kb_per_job"],
        results["soak_job_topics"],
    )
    lines = [
        *header,
        f"Each layout gets a fresh Celery worker of 2 processes (`-A bench.noop`: Jobstream's tasks and Celery's "
        f"own no-op task, whose only work is one Redis INCR so that its end can be seen). On each: "
        f"{cfg['noop_tasks']:,} no-op tasks and {results['soak_jobs']:,} one-step `count` jobs (`STEP_DELAY_MS=0`, "
        f"submitted through `submit_job`), in {turn_count} turns of each sent at once, so that a drift in the "
        "machine's speed slows both; a turn's time runs from its first send to its last one's end (its snapshot or the "
        "counter, polled every 10 ms), and each rate is its count over its turns' time together. The worker's "
        "memory (RSS, its pool included) is taken before the first turn and after the last, after 20 jobs of "
        "warm-up. " + _broker_line(results),
        "",
        "| Layout | One-step jobs/s | No-op tasks/s, same worker | Jobs vs no-op | Target | Result "
        "| Job topics on the broker after | Worker RSS before / after | Growth per job |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for target in targets(results):
        name = target.key.rsplit(".", 1)[1]
        lines.append(
            f"| {name} | {jobs[name]:,.1f} | {noop[name]:,.0f} | {r['small_jobs_vs_noop'][name]:.2f}x "
            f"| {target.text()} | {_passed(results, target)} | {topics[name]:,} "
            f"| {rss[name]['before']:,.1f} / {rss[name]['after']:,.1f} MB | {per_job[name]:,.1f} KB |"
        )
    lines += [
        "",
        "Jobs vs no-op, turn by turn: "
        + "; ".join(
            f"{name} " + ", ".join(f"{t['small_jobs_per_s'] / t['noop_tasks_per_s']:.2f}x" for t in turns)
            for name, turns in results["soak_turns"].items()
        )
        + ".",
        *_broker_cpu(results["soak_turns"]),
        "",
        "Why a job is slower than the no-op task: its task's median run time in the worker (Celery's log) against "
        "the no-op task's, "
        + ", ".join(
            f"{name} layout {t['job']:.1f} ms against {t['noop']:.2f} ms" for name, t in results["soak_task_ms"].items()
        )
        + ". Before its first step a job asks for its log's topic (the topic layout creates one per job), marks "
        "where its records begin (the shared layout), and reads its log for a state to resume from; after its last, "
        "it waits for the broker to acknowledge its records. Both rates also include Celery's dispatch of each "
        "message (late acks, prefetch 1, task events), which bounds the no-op task's rate.",
        "",
        "History store: per layout a fresh worker of 2 processes and a history consumer of its own (SQLite under "
        f"RUN_DIR, a group of its own); {cfg['burst_jobs']} jobs of {cfg['burst_steps']} steps "
        f"({cfg['burst_step_delay_ms']:g} ms each) at once; for each, its final record's time to the first poll of "
        "the store (every 50 ms) that shows it finished. In the topic layout a new job's topic joins the group's "
        "subscription at its next metadata refresh (1 s), then a rebalance.",
        "",
        "| Layout | Store lag p50 / p99 / max | Consumers' reported lag, worst | Log page p50 / p95, store "
        "| Same from Kafka (pooled reader) | Kafka p95 vs store p95 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, lag in results["store_lag_ms"].items():
        reported, page = results["store_reported_lag_max"][name], results["log_page_ms"][name]
        lines.append(
            f"| {name} | {lag['p50']:,.0f} / {lag['p99']:,.0f} / {lag['max']:,.0f} ms "
            f"| {reported['records_behind']:,} records, {reported['seconds_behind']:.1f} s "
            f"| {page['store']['p50']:.2f} / {page['store']['p95']:.2f} ms "
            f"| {page['kafka']['p50']:.2f} / {page['kafka']['p95']:.2f} ms "
            f"| {r['log_page_kafka_vs_store_p95'][name]:.1f}x |"
        )
    pages = next(iter(results["log_page_ms"].values()))
    lines += [
        "",
        f"Log pages: one finished job of {cfg['page_job_steps']:,} steps ({pages['records']:,} records, "
        f"{pages['pages']} pages of 1,000), {cfg['page_reads']} reads from each, going through its pages in turn; "
        "every page was first checked to hold the same records from both.",
    ]
    return lines


def _broker_line(results: dict[str, Any]) -> str:
    """How clean the broker was for each layout: emptied when the bench started it, as is its Redis."""
    if results.get("services", {}).get("kafka", "").startswith("embedded"):
        return (
            "Each layout starts on an empty Redis database and an empty broker: the embedded one is started "
            "again (it holds everything in memory, and its cost per request grows with the topics it holds)."
        )
    return "Each layout starts on an empty Redis database; the broker is reused, with whatever it holds."


def _broker_cpu(soak_turns: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The embedded broker's CPU per job, turn by turn (nothing for a reused broker, not measured)."""
    if any(turn["broker_ms_per_job"] is None for turns in soak_turns.values() for turn in turns):
        return []
    return [
        "",
        "The embedded broker's CPU per job, turn by turn: "
        + "; ".join(
            f"{name} " + ", ".join(f"{turn['broker_ms_per_job']:.1f}" for turn in turns) + " ms"
            for name, turns in soak_turns.items()
        )
        + ".",
    ]
