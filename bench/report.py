"""The bench's results: targets checked, written as latest.json, latest.md and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import e2e_report, history_report, ops_report, plots
from bench.targets import Target, lookup

TARGETS = (
    Target("throughput_steps_per_s", ">=", 150_000, " steps/s"),
    Target("ratios.throughput_vs_baseline", ">=", 50, "x baseline"),
    Target("ratios.catalog_vs_hand_loop", ">=", 0.9, "x the hand-written loop"),
    Target("ratios.log_lines_vs_steps", ">=", 0.25, "x steps/s"),
    Target("ratios.log_lines_msgs_vs_bound", "<=", 1.0, "x the bound"),
    Target("redis_msgs_per_s_per_job", "<=", 25, "/s"),
    Target("redis_msgs_peak_per_s", "<=", 25),
    Target("submit_p95_ms", "<", 20, " ms"),
    Target("get_job_redis_p95_ms", "<", 5, " ms"),
    Target("get_job_kafka_p95_ms", "<", 100, " ms"),
)


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it passed."""
    targets = (
        *TARGETS,
        *e2e_report.targets(results),
        *ops_report.targets(results),
        *history_report.targets(results),
    )
    return [target.check(results) for target in targets]


def _targets_of(*keys: str) -> list[Target]:
    return [t for t in TARGETS if t.key in keys]


@dataclass(frozen=True)
class Row:
    """One line of the Markdown table: a figure, its baseline, how they compare, its targets."""

    figure: str
    value: Callable[[dict[str, Any]], str]
    baseline: Callable[[dict[str, Any]], str] = lambda r: "-"
    compared: Callable[[dict[str, Any]], str] = lambda r: "-"
    targets: tuple[str, ...] = ()

    def cells(self, results: dict[str, Any]) -> list[str]:
        targets = _targets_of(*self.targets)
        target = " and ".join(t.text() for t in targets) or "-"
        passed = [t.passed(lookup(results, t.key)) for t in targets]
        result = ("PASS" if all(passed) else "FAIL") if passed else "-"
        return [self.figure, self.value(results), self.baseline(results), self.compared(results), target, result]


def _ms(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: f"{r[key]:.2f} ms"


ROWS = (
    Row(
        "Throughput, one job of N steps (steps/s)",
        lambda r: f"{r['throughput_steps_per_s']:,.0f} (N={r['n']:,})",
        lambda r: f"{r['baseline_throughput_steps_per_s']:,.0f} (N={r['baseline_n']:,})",
        lambda r: f"{r['ratios']['throughput_vs_baseline']:,.1f}x faster",
        ("throughput_steps_per_s", "ratios.throughput_vs_baseline"),
    ),
    Row(
        "Count job through the catalog (ctx.steps) vs the seed's hand-written loop, same N (steps/s)",
        lambda r: f"{r['catalog_throughput_steps_per_s']:,.0f}",
        lambda r: f"{r['hand_loop_throughput_steps_per_s']:,.0f}",
        lambda r: f"{r['ratios']['catalog_vs_hand_loop']:.2f}x",
        ("ratios.catalog_vs_hand_loop",),
    ),
    Row(
        "Log lines into Kafka, one job printing as fast as it can (lines/s; baseline: the count job's steps/s)",
        lambda r: f"{r['log_lines_per_s']:,.0f} (N={r['log_lines']:,})",
        lambda r: f"{r['throughput_steps_per_s']:,.0f}",
        lambda r: f"{r['ratios']['log_lines_vs_steps']:.2f}x",
        ("ratios.log_lines_vs_steps",),
    ),
    Row(
        "Progress messages per second while it prints (baseline: one per PROGRESS_INTERVAL_MS)",
        lambda r: f"{r['log_lines_redis_msgs_per_s']:.1f} (peak {r['log_lines_redis_peak_per_s']} in a second)",
        lambda r: f"{r['coalescing_bound_msgs_per_s']:.0f}",
        lambda r: f"{r['ratios']['log_lines_msgs_vs_bound']:.2f}x",
        ("ratios.log_lines_msgs_vs_bound",),
    ),
    Row(
        "Steps per CPU second of the loop's process (its Kafka client threads included)",
        lambda r: f"{r['throughput_steps_per_cpu_s']:,.0f}",
    ),
    Row(
        "Redis messages per second, one job",
        lambda r: f"{r['redis_msgs_per_s_per_job']:.1f} ({r['redis_msgs_total']} in all)",
        lambda r: f"{r['baseline_redis_msgs_per_s_per_job']:,.0f}",
        lambda r: f"{r['baseline_redis_msgs_per_s_per_job'] / r['redis_msgs_per_s_per_job']:,.0f}x fewer",
        ("redis_msgs_per_s_per_job",),
    ),
    Row(
        "Redis messages in any one second, one job, any N",
        lambda r: f"{r['redis_msgs_peak_per_s']}",
        targets=("redis_msgs_peak_per_s",),
    ),
    Row("submit_job p95", _ms("submit_p95_ms"), targets=("submit_p95_ms",)),
    Row("get_job p95, snapshot in Redis", _ms("get_job_redis_p95_ms"), targets=("get_job_redis_p95_ms",)),
    Row(
        "get_job p95, from Kafka (baseline: new consumer per read)",
        _ms("get_job_kafka_p95_ms"),
        _ms("baseline_recovery_read_p95_ms"),
        lambda r: f"{r['ratios']['recovery_read_baseline_vs_kafka']:,.1f}x faster",
        ("get_job_kafka_p95_ms",),
    ),
    Row(
        "Celery worker: one job of N steps, submit to succeeded",
        lambda r: (
            f"{r['worker_job_submit_to_succeeded_s']:.2f} s (N={r['worker_job_n']:,}, "
            f"{r['worker_job_steps_per_s']:,.0f} steps/s)"
        ),
    ),
    Row("Celery worker: submit to first progress message", _ms("worker_pickup_ms")),
    Row(
        "Celery worker: 1-step job, submit to succeeded (median; first job of a fresh worker)",
        lambda r: f"{r['worker_small_job_p50_ms']:.1f} ms ({r['worker_first_small_job_ms']:.0f} ms)",
    ),
)


def markdown(results: dict[str, Any], plot_files: list[str]) -> str:
    """The results as a Markdown page: machine, the figures with PASS/FAIL, the series, the plots."""
    m = results["machine"]
    lines = [
        f"# Jobstream benchmark ({results['mode']} run, Kafka broker: {results.get('broker', 'tansu')})",
        "",
        f"{m['date']} on {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
        f"librdkafka {m['librdkafka']}, Redis {m['redis']}; load average {m['loadavg_start']} at the start, "
        f"{m['loadavg_end']} at the end (the machine may be shared: compare figures within one run). "
        f"Services: {', '.join(f'{k} {v}' for k, v in results['services'].items())}. "
        f"Wall time {results['wall_time_s']:.0f} s.",
        "",
        "Baseline: the demo's way, in the same run: a Kafka produce and flush per step, a Redis publish per step",
        "on one shared channel, a new Kafka consumer per recovery read.",
        "",
        "| Figure | Jobstream | Baseline | Jobstream vs baseline | Target | Result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row.cells(results)) + " |" for row in ROWS]
    lines += ["", "## Throughput against N", "", "| Loop | N | steps/s (median) | min | max | Redis msgs/s (median) |"]
    lines += ["| --- | ---: | ---: | ---: | ---: | ---: |"]
    # Jobstream sends a few Redis messages a second, the baseline thousands: decimals only for the few.
    for loop, key, msgs in (("Jobstream", "series", ",.1f"), ("Baseline", "baseline_series", ",.0f")):
        lines += [
            f"| {loop} | {point['n']:,} | {point['steps_per_s']:,.0f} | {point['steps_per_s_min']:,.0f} "
            f"| {point['steps_per_s_max']:,.0f} | {point['redis_msgs_per_s']:{msgs}} |"
            for point in results[key]
        ]
    lines += [
        "",
        f"{results['config']['repeats']} runs at each N; headline figures: each loop's best run at its largest N",
        "(other processes on the machine can only slow a run down). Every run's log was read back to its end",
        "and checked: steps 1..N in order and a final `succeeded` record.",
    ]
    lines += e2e_report.markdown(results)
    lines += ops_report.markdown(results)
    lines += history_report.markdown(results)
    lines += ["", *[f"![{Path(name).stem}]({name})" for name in plot_files], ""]
    return "\n".join(lines)


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write latest.json, the plots and latest.md into out_dir; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_paths = plots.draw(results, out_dir)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(markdown(results, [p.name for p in plot_paths]))
    return [json_path, md_path, *plot_paths]
