"""The benchmark suite, small: `python -m bench --quick` runs end to end and writes every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import BENCH_ENV
from settings import PROJECT_ROOT

KEYS = [
    "throughput_steps_per_s",
    "baseline_throughput_steps_per_s",
    "redis_msgs_per_s_per_job",
    "submit_p95_ms",
    "get_job_redis_p95_ms",
    "get_job_kafka_p95_ms",
    "baseline_recovery_read_p95_ms",
    "e2e_latency_ms",
    "peer_e2e_latency_ms",
    "backend_rss_per_client_kb",
    "ratios",
]


@pytest.mark.timeout(600)
def test_the_quick_bench_measures_every_figure(tmp_path: Path) -> None:
    # The bench's own database, broker port and ports, whatever this test session's are.
    env = {**os.environ, **BENCH_ENV, "FRONTEND_PORT": "3600", "API_URL": "http://localhost:8600"}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    results = json.loads((tmp_path / "latest.json").read_text())
    for key in KEYS:
        assert key in results, f"{key} missing from latest.json"
    assert results["throughput_steps_per_s"] > results["baseline_throughput_steps_per_s"] > 0
    assert {"p50", "p99"} <= set(results["e2e_latency_ms"]["1"])
    assert (tmp_path / "latest.md").read_text().startswith("# Jobstream benchmark")
    assert list(tmp_path.glob("*.png")), "plots are drawn"
