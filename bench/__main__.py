"""`python -m bench [--quick] [--check] [--out DIR]`: run every benchmark, write and print the results.

Exit status: 0 when every benchmark ran (and, with --check, met its target); 1 when a target was
missed under --check; 2 when a benchmark could not measure or its own check failed. A crash exits
non-zero through its traceback.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import confluent_kafka
from tqdm import tqdm

from bench import baseline, e2e, e2e_redis, e2e_report, history, latency, lines, ops, peer, pipeline, report, worker
from bench.config import FULL, QUICK, Config
from bench.measure import Tick
from bench.stack import BenchError, BenchStack, add_broker_option, use_broker_option
from settings import use_environment
from stack.processes import ProcessError
from stack.services import ServiceError

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under 2 minutes")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    add_broker_option(parser)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"results folder (default {RESULTS_DIR})")
    return parser.parse_args(argv)


def units(cfg: Config) -> int:
    """How many ticks the progress bar will see."""
    e2e_ticks = (
        2
        + len(cfg.e2e_clients) * (2 + cfg.e2e_redis_state)
        + 1
        + (1 + len(e2e_redis.PROCESS_COUNTS)) * cfg.e2e_redis_state
        + cfg.e2e_profile
    )
    history_ticks = history.TICKS if cfg.history else 0
    ops_ticks = ops.TICKS if cfg.ops_jobs else 0
    return (len(cfg.ns) + len(cfg.baseline_ns) + 2) * cfg.repeats + 3 + 1 + 3 + e2e_ticks + history_ticks + ops_ticks


def machine(stack: BenchStack) -> dict[str, Any]:
    info: dict[str, Any] = stack.redis.info("server")  # type: ignore[assignment]
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_start": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "librdkafka": confluent_kafka.libversion()[0],
        "redis": info.get("redis_version", "?"),
    }


def run(cfg: Config, stack: BenchStack, tick: Tick) -> dict[str, Any]:
    """Every benchmark, in an order where none disturbs the next; the results without targets."""
    results: dict[str, Any] = {"mode": cfg.mode, "config": asdict(cfg)}
    results |= {"machine": machine(stack), "services": stack.describe(), "broker": stack.broker}
    results |= pipeline.summarize(pipeline.series(stack, cfg.ns, cfg.repeats, tick))
    hand_loop = pipeline.hand_loop_runs(stack, cfg.n, cfg.repeats, tick)
    results |= lines.run(stack, cfg.log_lines, cfg.repeats, tick)
    results |= baseline.summarize(baseline.series(stack, cfg.baseline_ns, cfg.repeats, tick))
    reads = latency.reads(
        stack,
        results["headline_job_id"],
        cfg.n,
        cfg.get_job_redis_calls,
        cfg.get_job_kafka_calls,
        cfg.recovery_reads,
        tick,
    )
    submits = latency.submits(stack, cfg.submits, tick)
    results |= reads | submits | {"latency": reads["latency"] | submits["latency"]}
    results |= worker.end_to_end(stack, cfg.worker_n, cfg.small_jobs, tick)
    results |= e2e.run(stack, cfg, tick)
    results |= peer.run(stack, cfg, tick)
    results |= hand_loop
    results |= ops.run(stack, cfg, tick)
    # Last: it empties an embedded broker (it starts it again) and leaves a thousand job topics there.
    results |= history.run(stack, cfg, tick)
    results["ratios"] = {
        "throughput_vs_baseline": results["throughput_steps_per_s"] / results["baseline_throughput_steps_per_s"],
        "catalog_vs_hand_loop": hand_loop.pop("catalog_vs_hand_loop"),
        "log_lines_vs_steps": results["log_lines_per_s"] / results["throughput_steps_per_s"],
        "log_lines_msgs_vs_bound": results["log_lines_redis_msgs_per_s"] / results["coalescing_bound_msgs_per_s"],
        "recovery_read_baseline_vs_kafka": results["baseline_recovery_read_p95_ms"] / results["get_job_kafka_p95_ms"],
        **e2e_report.ratios(results),
        **history.ratios(results),
        **ops.ratios(results),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    # Its own Redis database, broker port, ports and run folder, unless the environment names others.
    args = parse_args(argv)
    use_broker_option(args)
    settings = use_environment("bench")
    cfg = QUICK if args.quick else FULL
    start = time.perf_counter()
    bar = tqdm(total=units(cfg), desc=f"bench ({cfg.mode})", unit="step", file=sys.stderr)

    def tick(done: str) -> None:
        bar.set_postfix_str(done, refresh=False)
        bar.update()

    try:
        with BenchStack(settings) as stack:
            results = run(cfg, stack, tick)
    except (BenchError, ProcessError, ServiceError) as exc:  # a worker, an app or a service did not start
        bar.close()
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    bar.close()
    results["wall_time_s"] = time.perf_counter() - start
    results["machine"]["loadavg_end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    results["targets"] = report.evaluate(results)
    results["all_targets_met"] = all(t["passed"] for t in results["targets"])
    written = report.write(results, args.out)
    print(report.markdown(results, []))
    print("written: " + ", ".join(str(p) for p in written))
    return 1 if args.check and not results["all_targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
