"""The end-to-end part of the report: peer/Jobstream ratios, targets and a Markdown section."""

from __future__ import annotations

from typing import Any

from bench.targets import Target

HEADLINE_CLIENTS = "50"
# p99 limits by number of pages connected.
P99_LIMITS_MS = {"50": 300.0, "200": 600.0}


def _p50_ratios(peer: dict[str, Any], ours: dict[str, Any]) -> dict[str, float]:
    return {clients: peer[clients]["p50"] / ours[clients]["p50"] for clients in ours}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Peer p50 over Jobstream p50 at each client count, for both delays; the headline at 50 pages."""
    delivered = _p50_ratios(results["peer_e2e_latency_ms"], results["e2e_latency_ms"])
    shown = _p50_ratios(results["peer_step_to_client_ms"], results["e2e_step_to_client_ms"])
    return {
        "peer_p50_over_jobstream_p50": delivered[HEADLINE_CLIENTS],
        "peer_p50_over_jobstream_p50_by_clients": delivered,
        "peer_step_to_client_p50_over_jobstream": shown[HEADLINE_CLIENTS],
        "peer_step_to_client_p50_over_jobstream_by_clients": shown,
    }


def targets(results: dict[str, Any]) -> list[Target]:
    """The end-to-end targets for the client counts this run measured (none when it measured none)."""
    if "e2e_latency_ms" not in results:
        return []
    counts = list(results["e2e_latency_ms"])
    p50_limit = results["progress_interval_ms"] + 30
    return [
        *(Target(f"e2e_latency_ms.{clients}.p50", "<=", p50_limit, " ms") for clients in counts),
        *(Target(f"e2e_latency_ms.{c}.p99", "<=", limit, " ms") for c, limit in P99_LIMITS_MS.items() if c in counts),
        Target("ratios.peer_p50_over_jobstream_p50", ">=", 5, "x"),
        Target("ratios.peer_step_to_client_p50_over_jobstream", ">=", 5, "x"),
        Target("redis_connections_growth", "<=", 0),
    ]


def _ms(figure: dict[str, float]) -> str:
    return f"{figure['p50']:.0f} / {figure['p99']:.0f}"


def markdown(results: dict[str, Any]) -> list[str]:
    """The section's lines ([] when the run measured no end-to-end latency)."""
    if "e2e_latency_ms" not in results:
        return []
    cfg, r = results["config"], results["ratios"]
    lines = [
        "",
        "## End to end: a step in the worker to the page",
        "",
        f"{cfg['e2e_jobs']} jobs of {cfg['e2e_n']:,} steps ({cfg['e2e_step_delay_ms']:g} ms each) run at once; "
        "the pages share them round-robin, each watching one. Jobstream: `reflex run --env prod`, state manager "
        f"{results['e2e_state_manager']}, pages are scripted socket.io clients (client token, jobs cookie, "
        "hydrate, on_load). Peer: the usual way, `update_state` per step into Celery's Redis result backend and "
        "an HTTP endpoint (granian, Starlette) each page polls every 500 ms.",
        "",
        "- *delivered*: arrival of a state at the page minus the time its step was taken (the record's `ts`).",
        "- *step to page*: for every step, the time until the page had it or a later one (what a person waits).",
        "",
        "| Pages | Jobstream delivered p50 / p99 (ms) | Peer delivered | Jobstream step to page | Peer step to page "
        "| Peer / Jobstream p50 (delivered, step to page) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for clients in results["e2e_latency_ms"]:
        lines.append(
            f"| {clients} | {_ms(results['e2e_latency_ms'][clients])} | {_ms(results['peer_e2e_latency_ms'][clients])} "
            f"| {_ms(results['e2e_step_to_client_ms'][clients])} | {_ms(results['peer_step_to_client_ms'][clients])} "
            f"| {r['peer_p50_over_jobstream_p50_by_clients'][clients]:.1f}x, "
            f"{r['peer_step_to_client_p50_over_jobstream_by_clients'][clients]:.1f}x |"
        )
    connections = ", ".join(f"{n} at {c}" for c, n in results["redis_connections_by_clients"].items())
    lines += [
        "",
        f"One real browser (headless Chromium, MutationObserver on the card), 1 page: delivered "
        f"{_ms(results['e2e_latency_browser_ms'])} ms, step to page {_ms(results['e2e_step_to_client_browser_ms'])} ms "
        "(p50 / p99).",
    ]
    if "e2e_latency_redis_state_ms" in results:
        redis_state = ", ".join(f"{_ms(v)} at {c}" for c, v in results["e2e_latency_redis_state_ms"].items())
        lines.append(f"With Reflex's state in Redis (REFLEX_REDIS_URL), delivered p50 / p99 ms: {redis_state} pages.")
    cpu = ", ".join(
        f"{v['backend_ms_per_update']:.2f} ms ({v['backend_s']:.1f} s; pages {v['pages_s']:.1f} s) at {c}"
        for c, v in results["e2e_cpu"].items()
    )
    jobs = ", ".join(
        f"{results['e2e_job_seconds'][c]:.1f} s / {results['peer_job_seconds'][c]:.1f} s at {c}"
        for c in results["e2e_job_seconds"]
    )
    lines += [
        f"Backend CPU per state update a page received (in all; this process's scripted pages): {cpu} pages.",
        f"A job's first to last step, Jobstream / peer (median): {jobs} pages.",
        f"Backend RSS per page: {results['backend_rss_per_client_kb']:.0f} KiB. Backend connections in Redis' "
        f"CLIENT LIST: {connections} pages.",
        "",
        "| Target | Value | Limit | Result |",
        "| --- | ---: | ---: | --- |",
    ]
    checked = {t["key"]: t for t in results["targets"]}
    for target in targets(results):
        t = checked[target.key]
        lines.append(f"| `{target.key}` | {t['value']:,.1f} | {target.text()} | {'PASS' if t['passed'] else 'FAIL'} |")
    return lines
