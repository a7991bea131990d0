"""The end-to-end part of the report: peer/Jobstream ratios, targets and a Markdown section."""

from __future__ import annotations

from typing import Any

from bench.profile import BUCKETS
from bench.targets import Target

HEADLINE_CLIENTS = "50"
# p99 limits by number of pages connected (issue 4 for publish to page, issue 6 for step to page).
P99_LIMITS_MS = {"50": 300.0, "200": 600.0}
# Coalescing interval plus this: issue 4's limit on the publish-to-page p50.
P50_OVER_INTERVAL_MS = 30
# Issue 6: the polling peer's step-to-page p50 over Jobstream's, at these client counts. Issue 17
# withdrew it at 200 pages: there one backend process is at its budget of page updates on this machine.
MIN_PEER_RATIO = 5
PEER_RATIO_COUNTS = ("1", "10", "50")
# Which issue's definition a target uses: the two delays are explained in bench.arrivals and the section.
STEP_TO_PAGE = "issue 6: step to page"
PUBLISH_TO_PAGE = "issue 4: publish to page"
# Issue 17: a job's end reaches its pages unpaced, and every page gets a smooth bar.
STATUS_CHANGE_P99_MS = {"200": 100.0}
STATUS_CHANGE = "issue 17: a job's end to its page"
# Issue 17: the backend's CPU per page update at the most pages, with the page state in memory.
BACKEND_MS_PER_UPDATE_LIMITS = {"200": 0.4}
BACKEND_MS_PER_UPDATE = "issue 17: the backend's CPU per page update"
MIN_UPDATES_PER_S = 5.0


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Peer step-to-page p50 over Jobstream's (`peer_e2e_latency_ms` over `e2e_latency_ms`) at each client
    count; the headline at 50 pages."""
    ours, peer = results["e2e_latency_ms"], results["peer_e2e_latency_ms"]
    by_clients = {clients: peer[clients]["p50"] / ours[clients]["p50"] for clients in ours}
    return {
        "peer_p50_over_jobstream_p50": by_clients[HEADLINE_CLIENTS],
        "peer_p50_over_jobstream_p50_by_clients": by_clients,
    }


def described_targets(results: dict[str, Any]) -> list[tuple[Target, str]]:
    """The end-to-end targets for the client counts this run measured, each with the issue and the figure
    it checks (none when the run measured no end-to-end latency)."""
    if "e2e_latency_ms" not in results:
        return []
    counts = list(results["e2e_latency_ms"])
    p50_limit = results["progress_interval_ms"] + P50_OVER_INTERVAL_MS
    described = [(Target(f"e2e_publish_to_client_ms.{c}.p50", "<=", p50_limit, " ms"), PUBLISH_TO_PAGE) for c in counts]
    for c, limit in P99_LIMITS_MS.items():
        if c in counts:
            described.append((Target(f"e2e_publish_to_client_ms.{c}.p99", "<=", limit, " ms"), PUBLISH_TO_PAGE))
    for c, limit in P99_LIMITS_MS.items():
        if c in counts:
            described.append((Target(f"e2e_latency_ms.{c}.p99", "<=", limit, " ms"), STEP_TO_PAGE))
    for c, limit in STATUS_CHANGE_P99_MS.items():
        if c in counts:
            described.append((Target(f"e2e_status_change_ms.{c}.p99", "<=", limit, " ms"), STATUS_CHANGE))
    for c, limit in BACKEND_MS_PER_UPDATE_LIMITS.items():
        if c in results.get("e2e_cpu", {}):
            cost = Target(f"e2e_cpu.{c}.backend_ms_per_update", "<=", limit, " ms")
            described.append((cost, BACKEND_MS_PER_UPDATE))
    for c, rate in results.get("e2e_min_updates_per_s", {}).items():
        if rate is not None:  # None: no job ran for a second
            smooth = Target(f"e2e_min_updates_per_s.{c}", ">=", MIN_UPDATES_PER_S, "/s")
            described.append((smooth, "issue 17: the fewest updates a second a page got of its running job"))
    for c in (c for c in counts if c in PEER_RATIO_COUNTS):
        ratio = Target(f"ratios.peer_p50_over_jobstream_p50_by_clients.{c}", ">=", MIN_PEER_RATIO, "x")
        described.append((ratio, "issue 6: peer / Jobstream step-to-page p50"))
    growth = Target("redis_connections_growth", "<=", 0)
    described.append((growth, "issue 6: backend's Redis connections, most pages minus fewest"))
    return described


def targets(results: dict[str, Any]) -> list[Target]:
    """The end-to-end targets for the client counts this run measured (none when it measured none)."""
    return [target for target, _ in described_targets(results)]


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
        f"{results['e2e_state_manager']}, pages are scripted socket.io clients (client token, the session cookie "
        "of the job's owner, hydrate, on_load). Peer: the usual way, `update_state` per step into Celery's Redis "
        "result backend and an HTTP endpoint (granian, Starlette) each page polls every 500 ms.",
        "",
        "Two delays, for every page and every step (bench/arrivals.py):",
        "",
        "- *step to page* (`e2e_latency_ms`, `peer_e2e_latency_ms`; issue 6's delay from a step being taken to "
        "its state arriving at the client): for every step, the time until the page had it or a later one. "
        "This is what a person waits; a polling page's includes the wait for its next poll.",
        f"- *publish to page* (`e2e_publish_to_client_ms`, `peer_publish_to_client_ms`; issue 4's delay from a "
        f"step's publish to the state change arriving): for each state that reached the page, its arrival minus "
        f"the time its step was taken (the record's `ts`; Jobstream publishes a step's state when it is taken, "
        f"coalesced every {results['progress_interval_ms']:g} ms). Only the states that arrived count: for the "
        "peer each poll returns the latest state, so its figure is small by construction and says nothing of "
        "the steps between polls.",
        "",
        "- *a job's end to its page* (`e2e_status_change_ms`; issue 17): the page's first arrival of the "
        "job's final status minus its final record's time. Pacing spaces out progress, never a status change.",
        "- *updates a second* (`e2e_min_updates_per_s`; issue 17): the new steps a page got per second of its "
        "job's run, for the page that got the fewest.",
        "",
        "| Pages | Jobstream step to page p50 / p99 (ms) | Peer step to page | Peer / Jobstream step-to-page p50 "
        "| Jobstream publish to page | Peer publish to page | Job's end to page | Fewest updates/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for clients in results["e2e_latency_ms"]:
        ended = results.get("e2e_status_change_ms", {}).get(clients)
        rate = results.get("e2e_min_updates_per_s", {}).get(clients)
        lines.append(
            f"| {clients} | {_ms(results['e2e_latency_ms'][clients])} | {_ms(results['peer_e2e_latency_ms'][clients])} "
            f"| {r['peer_p50_over_jobstream_p50_by_clients'][clients]:.1f}x "
            f"| {_ms(results['e2e_publish_to_client_ms'][clients])} "
            f"| {_ms(results['peer_publish_to_client_ms'][clients])} "
            f"| {_ms(ended) if ended else 'n/a'} | {f'{rate:.1f}' if rate is not None else 'n/a'} |"
        )
    connections = ", ".join(f"{n} at {c}" for c, n in results["redis_connections_by_clients"].items())
    lines += [
        "",
        f"One real browser (headless Chromium, MutationObserver on the card), 1 page, p50 / p99: step to page "
        f"{_ms(results['e2e_latency_browser_ms'])} ms (`e2e_latency_browser_ms`), publish to page "
        f"{_ms(results['e2e_publish_to_client_browser_ms'])} ms (`e2e_publish_to_client_browser_ms`), the job's "
        f"end to page {_ms(results['e2e_status_change_browser_ms'])} ms (`e2e_status_change_browser_ms`, one job).",
    ]
    if "e2e_latency_redis_state_ms" in results:
        step = ", ".join(f"{_ms(v)} at {c}" for c, v in results["e2e_latency_redis_state_ms"].items())
        publish = ", ".join(f"{_ms(v)} at {c}" for c, v in results["e2e_publish_to_client_redis_state_ms"].items())
        lines.append(
            f"With Reflex's state in Redis (REFLEX_REDIS_URL; opportunistic lock on, see settings.reflex_environment), "
            f"p50 / p99 ms: step to page {step} pages "
            f"(`e2e_latency_redis_state_ms`); publish to page {publish} pages (`e2e_publish_to_client_redis_state_ms`)."
        )
    cpu = ", ".join(
        f"{v['backend_ms_per_update']:.2f} ms ({v['backend_s']:.1f} s; pages {v['pages_s']:.1f} s) at {c}"
        for c, v in results["e2e_cpu"].items()
    )
    jobs = ", ".join(
        f"{results['e2e_job_seconds'][c]:.1f} s / {results['peer_job_seconds'][c]:.1f} s at {c}"
        for c in results["e2e_job_seconds"]
    )
    cores = ", ".join(f"{v:.1f} at {c}" for c, v in results["e2e_backend_cores_at_full_rate"].items())
    per_core = ", ".join(f"{v:.0f} at {c}" for c, v in results.get("e2e_pages_per_core_at_full_rate", {}).items())
    lines += [
        f"Backend CPU per state update a page received (in all; this process's scripted pages): {cpu} pages.",
        f"Backend cores needed to send every coalesced message to every page at that cost "
        f"(`e2e_backend_cores_at_full_rate`): {cores} pages; this machine has {results['machine']['cpu_count']}. "
        f"Put the other way (`e2e_pages_per_core_at_full_rate`), one backend core serves at full rate "
        f"({1000 / results['progress_interval_ms']:g} updates a second a page): {per_core} pages; at N updates a "
        f"second a page, 1000 / (N x ms per update) pages a core.",
        f"A job's first to last step, Jobstream / peer (median): {jobs} pages.",
        f"Backend RSS per page: {results['backend_rss_per_client_kb']:.0f} KiB. Backend connections in Redis' "
        f"CLIENT LIST: {connections} pages.",
        *profile_lines(results),
        *processes_lines(results),
        "",
        "| Target | Issue: what it checks | Value | Limit | Result |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    checked = {t["key"]: t for t in results["targets"]}
    for target, what in described_targets(results):
        t = checked[target.key]
        result = "PASS" if t["passed"] else "FAIL"
        lines.append(f"| `{target.key}` | {what} | {t['value']:,.1f} | {target.text()} | {result} |")
    return lines


def profile_lines(results: dict[str, Any]) -> list[str]:
    """Where the backend's time went at the most pages (bench.profile), or why that is not known."""
    profile = results.get("e2e_backend_profile")
    if profile is None:
        return []
    if "error" in profile:
        return ["", f"No profile of the backend at {profile['pages']} pages: {profile['error']}."]
    lines = [
        "",
        f"Where the backend's CPU goes at {profile['pages']} pages (`e2e_backend_profile`): py-spy at "
        f"{profile['rate_hz']} Hz on the backend process, {profile['samples']:,} busy samples (idle ones left out), "
        "in a phase of its own after the measured one (the sampler's "
        f"CPU stays out of the figures above; that phase cost {profile['profiled_phase_ms_per_update']:.2f} ms "
        "per update with it). A sample counts for the bucket of its innermost frame that one names "
        "(bench/profile.py), so the app's share is the time in its own frames. Each bucket's ms per update is "
        f"its share of the {profile['backend_ms_per_update']:.2f} ms per update of the measured phase.",
        "",
        "| Bucket | What it holds | Share of samples | ms per update |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, figure in profile["buckets"].items():
        lines.append(f"| {name} | {BUCKETS[name]} | {figure['share']:.0%} | {figure['ms_per_update']:.3f} |")
    return lines


def processes_lines(results: dict[str, Any]) -> list[str]:
    """Reflex's state in Redis with 1, 2 and Reflex's default backend processes at the most pages, against
    the in-memory single process of the same run."""
    if "e2e_redis_state_error" in results:
        return ["", f"The series with Reflex's state in Redis did not end: {results['e2e_redis_state_error']}."]
    measured = results.get("e2e_redis_state_cpu")
    if measured is None:
        return []
    pages = str(measured["pages"])
    memory, memory_step = results["e2e_cpu"][pages], results["e2e_latency_ms"][pages]
    lines = [
        "",
        f"The same {pages} pages with Reflex's state in Redis, by backend processes (`e2e_redis_state_cpu`): CPU "
        "of every process of the app (granian's workers and their supervisor) per update a page got, the "
        "updates all pages got a second, and both against the state in memory with its one "
        f"process, above (this machine has {results['machine']['cpu_count']} CPUs).",
        "",
        "| Backend processes | ms per update | vs memory | updates/s | vs memory | step to page p50 / p99 (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| 1, state in memory | {memory['backend_ms_per_update']:.2f} | 1.00x | {memory['updates_per_s']:,.0f} "
        f"| 1.00x | {_ms(memory_step)} |",
    ]
    for count, figure in measured["by_processes"].items():
        default = " (Reflex's default)" if figure["reflex_default"] else ""
        if "error" in figure:
            lines.append(f"| {count}{default}, state in Redis | did not end: {figure['error']} | | | | |")
            continue
        lines.append(
            f"| {count}{default}, state in Redis | {figure['backend_ms_per_update']:.2f} "
            f"| {figure['ms_per_update_vs_memory']:.2f}x | {figure['updates_per_s']:,.0f} "
            f"| {figure['updates_per_s_vs_memory']:.2f}x | {_ms(figure['step_to_page_ms'])} |"
        )
    return lines
