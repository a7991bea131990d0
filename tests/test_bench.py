"""The benchmark suite, small: `python -m bench --quick` runs end to end and writes every figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import history, history_report, ops, ops_report
from bench.config import QUICK
from bench.targets import lookup
from settings import ENVIRONMENTS
from tests.conftest import run_module

KEYS = [
    "throughput_steps_per_s",
    "baseline_throughput_steps_per_s",
    "redis_msgs_per_s_per_job",
    "submit_p95_ms",
    "get_job_redis_p95_ms",
    "get_job_kafka_p95_ms",
    "baseline_recovery_read_p95_ms",
    "e2e_latency_ms",
    "e2e_publish_to_client_ms",
    "e2e_latency_browser_ms",
    "e2e_publish_to_client_browser_ms",
    "e2e_status_change_ms",
    "e2e_status_change_browser_ms",
    "e2e_min_updates_per_s",
    "peer_e2e_latency_ms",
    "peer_publish_to_client_ms",
    "backend_rss_per_client_kb",
    "redis_connections_growth",
    "e2e_backend_cores_at_full_rate",
    "ratios",
]
# Step to page (issue 6) and publish to page (issue 4), Jobstream's and the polling peer's, by pages.
E2E_SERIES = ["e2e_latency_ms", "e2e_publish_to_client_ms", "peer_e2e_latency_ms", "peer_publish_to_client_ms"]
# Keys of earlier runs: the same figures must not appear under two names.
OLD_KEYS = ["e2e_step_to_client_ms", "peer_step_to_client_ms", "e2e_step_to_client_browser_ms"]


@pytest.mark.timeout(600)
def test_the_quick_bench_measures_every_figure(tmp_path: Path) -> None:
    # The bench's own database, broker port and ports, given explicitly: this session's environment
    # holds the tests' values, and the bench fills in only what is unset.
    env = {**ENVIRONMENTS["bench"], "FRONTEND_PORT": "3600", "API_URL": "http://localhost:8600"}
    run = run_module(["bench", "--quick", "--out", str(tmp_path)], env, timeout_s=580)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    results = json.loads((tmp_path / "latest.json").read_text())
    for key in KEYS:
        assert key in results, f"{key} missing from latest.json"
    assert results["throughput_steps_per_s"] > results["baseline_throughput_steps_per_s"] > 0
    for key in OLD_KEYS:
        assert key not in results, f"{key} is from earlier runs"
    counts = [str(clients) for clients in QUICK.e2e_clients]
    for key in E2E_SERIES:
        assert list(results[key]) == counts, key
        for clients, figure in results[key].items():
            assert 0 < figure["p50"] <= figure["p99"], f"{key} at {clients} pages: {figure}"
    cores = results["e2e_backend_cores_at_full_rate"]
    assert list(cores) == counts
    assert all(cores[c] > 0 for c in counts), cores
    ratios = results["ratios"]
    for clients in counts:
        peer, ours = results["peer_e2e_latency_ms"][clients]["p50"], results["e2e_latency_ms"][clients]["p50"]
        assert ratios["peer_p50_over_jobstream_p50_by_clients"][clients] == pytest.approx(peer / ours)
    assert ratios["peer_p50_over_jobstream_p50"] == ratios["peer_p50_over_jobstream_p50_by_clients"]["50"]
    checked = {target["key"] for target in results["targets"]}
    assert {
        *(f"e2e_publish_to_client_ms.{clients}.p50" for clients in counts),
        "e2e_publish_to_client_ms.50.p99",
        "e2e_latency_ms.50.p99",
        *(f"ratios.peer_p50_over_jobstream_p50_by_clients.{clients}" for clients in counts),
        "redis_connections_growth",
    } <= checked
    # The log layouts and the history store (bench.history) are left out of the quick run: their keys
    # are there, not measured, and so are their targets.
    for key in history.KEYS:
        assert results[key] is None, f"{key} is measured only in the full run"
    assert not any(key.startswith("ratios.small_jobs_vs_noop") for key in checked)
    # The operator's console (bench.ops), small: its first paints against the empty store's, its filter changes.
    assert results["ops_jobs"] == QUICK.ops_jobs
    for key in ("ops_first_paint_ms", "ops_first_paint_empty_ms", "ops_first_paint_after_hydrate_ms"):
        assert 0 < results[key]["p50"] <= results[key]["p95"], (key, results[key])
        assert results[key]["samples"] == QUICK.ops_repeats
    assert results["ops_filter_change_ms"]["samples"] == QUICK.ops_repeats
    assert results["ops_first_paint_after_hydrate_ms"]["p50"] < results["ops_first_paint_ms"]["p50"]
    assert {"ops_first_paint_ms.p95", "ops_filter_change_ms.p95"} <= checked
    markdown = (tmp_path / "latest.md").read_text()
    assert markdown.startswith("# Jobstream benchmark")
    assert "## The operator's console\n" in markdown
    assert "## Log layouts and the history store\n\nNot measured in this run" in markdown
    assert list(tmp_path.glob("*.png")), "plots are drawn"


def test_the_history_section_reports_each_layout_against_its_target() -> None:
    # The full run's shape (bench.history), without running it: figures by layout, the ratios, targets.
    lag = {"p50": 40.0, "p99": 90.0, "max": 95.0, "samples": 200}
    page = {"p50": 5.0, "p95": 8.0, "max": 9.0, "samples": 200}
    results: dict[str, Any] = {
        "config": {"noop_tasks": 2000, "burst_jobs": 200, "burst_steps": 300, "burst_step_delay_ms": 0.5}
        | {"page_job_steps": 5000, "page_reads": 200},
        "small_jobs_per_s": {"topic": 60.0, "shared": 300.0},
        "noop_tasks_per_s": {"topic": 400.0, "shared": 400.0},
        "soak_jobs": 1000,
        "soak_job_topics": {"topic": 1020, "shared": 1},
        "soak_worker_rss_mb": {name: {"before": 200.0, "after": 212.0} for name in history.LAYOUTS},
        "soak_worker_rss_kb_per_job": {"topic": 12.3, "shared": 0.4},
        "soak_task_ms": {name: {"job": 25.0, "noop": 1.5} for name in history.LAYOUTS},
        "soak_turns": {
            "topic": [
                {"noop_tasks_per_s": 400.0, "small_jobs_per_s": jobs, "broker_ms_per_job": broker}
                for jobs, broker in ((80.0, 1.5), (40.0, 4.0))
            ],
            "shared": [
                {"noop_tasks_per_s": noop, "small_jobs_per_s": 300.0, "broker_ms_per_job": 0.5}
                for noop in (500.0, 300.0)
            ],
        },
        "services": {"redis": "reused 127.0.0.1:6379", "kafka": "embedded 127.0.0.1:19095"},
        "store_lag_ms": {"shared": lag},
        "store_reported_lag_max": {"shared": {"records_behind": 500, "seconds_behind": 0.3}},
        "log_page_ms": {"shared": {"store": page, "kafka": {**page, "p95": 24.0}, "records": 5002, "pages": 6}},
    }
    results["ratios"] = history.ratios(results)
    assert results["ratios"]["small_jobs_vs_noop"] == {"topic": 0.15, "shared": 0.75}
    assert results["ratios"]["log_page_kafka_vs_store_p95"] == {"shared": 3.0}
    checked = {t.key: t.passed(lookup(results, t.key)) for t in history_report.targets(results)}
    assert checked == {"ratios.small_jobs_vs_noop.topic": False, "ratios.small_jobs_vs_noop.shared": True}
    lines = history_report.markdown(results)
    rows = [line for line in lines if line.startswith(("| topic |", "| shared |"))]
    assert [row.split(" | ")[5] for row in rows[:2]] == ["FAIL", "PASS"]
    assert "| shared | 40 / 90 / 95 ms |" in rows[2]
    text = "\n".join(lines)
    assert "in 2 turns of each" in text
    assert "turn by turn: topic 0.20x, 0.10x; shared 0.60x, 1.00x." in text
    assert "an empty broker: the embedded one is started again" in text
    assert "broker's CPU per job, turn by turn: topic 1.5, 4.0 ms; shared 0.5, 0.5 ms." in text


def test_the_console_section_reports_first_paint_against_the_empty_store() -> None:
    # bench.ops's figures and ratios, without running it: the targets are on the p95s.
    def figure(p50: float, p95: float) -> dict[str, float]:
        return {"p50": p50, "p95": p95, "max": p95 + 1, "samples": 20}

    results: dict[str, Any] = {
        "ops_jobs": 10_000,
        "ops_store_write_s": 2.5,
        "ops_first_paint_ms": figure(400.0, 600.0),
        "ops_first_paint_after_hydrate_ms": figure(100.0, 150.0),
        "ops_first_paint_empty_ms": figure(320.0, 400.0),
        "ops_first_paint_empty_after_hydrate_ms": figure(50.0, 75.0),
        "ops_first_paint_parts_ms": {
            "full": {"to_socket_open": figure(250.0, 400.0), "hydrate_to_rows_message": figure(60.0, 90.0)},
            "empty": {"to_socket_open": figure(240.0, 350.0)},
        },
        "ops_filter_change_ms": figure(40.0, 70.0),
    }
    results["ratios"] = ops.ratios(results)
    assert results["ratios"]["ops_first_paint_vs_empty"] == {"p50": 1.25, "p95": 1.5}
    assert results["ratios"]["ops_after_hydrate_vs_empty"] == {"p50": 2.0, "p95": 2.0}
    checked = {t.key: t.passed(lookup(results, t.key)) for t in ops_report.targets(results)}
    assert checked == {"ops_first_paint_ms.p95": False, "ops_filter_change_ms.p95": True}
    lines = ops_report.markdown(results)
    assert "| First paint of the list | 400 / 600 ms | 320 / 400 ms | 1.25x / 1.50x | < 300 ms | FAIL |" in lines
    assert any(line.startswith("| Status filter change | 40 / 70 ms |") and line.endswith("| PASS |") for line in lines)
    assert any(line.endswith("| 60 / 90 ms | - |") for line in lines), "a part the empty store has not: -"
    assert ops_report.markdown(dict.fromkeys(ops.KEYS))[-1].startswith("Not measured in this run")
