"""PNG plots of the results: throughput against N, latencies, Redis messages per job, end-to-end latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench import e2e_report

JOBSTREAM, BASELINE, TARGET = "tab:blue", "tab:gray", "tab:red"


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _throughput(results: dict[str, Any], ax: Axes) -> None:
    ours, base = results["series"], results["baseline_series"]
    ax.errorbar(
        [p["n"] for p in ours],
        [p["steps_per_s"] for p in ours],
        yerr=[
            [p["steps_per_s"] - p["steps_per_s_min"] for p in ours],
            [p["steps_per_s_max"] - p["steps_per_s"] for p in ours],
        ],
        marker="o",
        color=JOBSTREAM,
        capsize=3,
        label="Jobstream run_job (median; bars: slowest to fastest run)",
    )
    ax.plot([p["n"] for p in base], [p["steps_per_s"] for p in base], "s-", color=BASELINE, label="baseline (median)")
    ax.axhline(150_000, color=TARGET, linestyle="--", linewidth=1, label="target 150,000 steps/s")
    ax.set(xscale="log", yscale="log", xlabel="steps in the job (N)", ylabel="steps per second")
    ax.set_title("Throughput of one job, STEP_DELAY_MS=0, log complete")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def _latency(results: dict[str, Any], ax: Axes) -> None:
    names = {
        "submit_job": "submit_job",
        "get_job_redis": "get_job (Redis)",
        "get_job_kafka": "get_job (Kafka, pooled reader)",
        "baseline_recovery_read": "baseline read (new consumer)",
    }
    latency = results["latency"]
    rows = [(label, latency[key]) for key, label in names.items()]
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r["p50_ms"] for _, r in rows], height=0.4, color=JOBSTREAM, label="p50")
    ax.barh([y - 0.2 for y in ys], [r["p95_ms"] for _, r in rows], height=0.4, color="tab:orange", label="p95")
    ax.set_yticks(list(ys), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="milliseconds (log)")
    ax.set_title("Latency of the web app's calls")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend()


def _redis(results: dict[str, Any], ax: Axes) -> None:
    ours, base = results["series"], results["baseline_series"]
    ax.plot([p["n"] for p in ours], [p["redis_peak_per_s"] for p in ours], "o-", color=JOBSTREAM, label="Jobstream")
    ax.plot([p["n"] for p in base], [p["redis_peak_per_s"] for p in base], "s-", color=BASELINE, label="baseline")
    ax.axhline(25, color=TARGET, linestyle="--", linewidth=1, label="target 25")
    ax.set(xscale="log", yscale="log", xlabel="steps in the job (N)", ylabel="messages in the busiest second")
    ax.set_title("Redis progress messages one job sends")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def _e2e(results: dict[str, Any], ax: Axes, ours_key: str, peer_key: str, title: str) -> None:
    """p50 and p99 against the number of pages, Jobstream and the polling peer."""
    lines = ((ours_key, JOBSTREAM, "Jobstream (WebSocket)"), (peer_key, BASELINE, "peer (poll 500 ms)"))
    for key, color, label in lines:
        series: dict[str, dict[str, float]] = results[key]
        pages = [int(count) for count in series]
        ax.plot(pages, [p["p50"] for p in series.values()], "o-", color=color, label=f"{label} p50")
        ax.plot(pages, [p["p99"] for p in series.values()], "s--", color=color, label=f"{label} p99")
    ax.set(xscale="log", yscale="log", xlabel="pages connected", ylabel="milliseconds (log)", title=title)
    ax.set_xticks([int(count) for count in results[ours_key]], list(results[ours_key]))
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.grid(True, which="both", alpha=0.3)


def _p99_limits(results: dict[str, Any], ax: Axes) -> None:
    for count, p99 in e2e_report.P99_LIMITS_MS.items():
        if count in results["e2e_latency_ms"]:
            ax.plot([int(count)], [p99], "v", color=TARGET, label=f"target p99 at {count} pages")


def _e2e_figure(results: dict[str, Any], path: Path) -> Path:
    """Left: step to page (issue 6's e2e_latency_ms); right: publish to page (issue 4's)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    step_title = "Step to page (e2e_latency_ms, issue 6):\nevery step until the page has it or a later one"
    _e2e(results, left, "e2e_latency_ms", "peer_e2e_latency_ms", step_title)
    _p99_limits(results, left)
    left.legend(fontsize="small")
    publish_title = "Publish to page (e2e_publish_to_client_ms, issue 4):\neach state's arrival minus its step's time"
    _e2e(results, right, "e2e_publish_to_client_ms", "peer_publish_to_client_ms", publish_title)
    limit = results["progress_interval_ms"] + e2e_report.P50_OVER_INTERVAL_MS
    right.axhline(limit, color=TARGET, linestyle=":", linewidth=1, label=f"target p50 {limit:.0f} ms")
    _p99_limits(results, right)
    right.legend(fontsize="small")
    return _save(fig, path)


def draw(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Draw every plot into out_dir; return the files."""
    paths = []
    for name, plot in (("throughput", _throughput), ("latency", _latency), ("redis_messages", _redis)):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        plot(results, ax)
        paths.append(_save(fig, out_dir / f"{name}.png"))
    if "e2e_latency_ms" in results:
        paths.append(_e2e_figure(results, out_dir / "e2e_latency.png"))
    return paths
