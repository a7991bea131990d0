"""The report's section on the operator's console (bench.ops), and its targets."""

from __future__ import annotations

from typing import Any

from bench.targets import Target

# Issue 16: with 10,000 jobs in the store, the list's first paint and a filter change stay under 300 ms
# (read here as their p95: "stay under" holds for the slow ones too).
LIMIT_MS = 300.0
TARGETS = (
    (Target("ops_first_paint_ms.p95", "<", LIMIT_MS, " ms"), "first paint of the list (p95)"),
    (Target("ops_filter_change_ms.p95", "<", LIMIT_MS, " ms"), "a status filter change (p95)"),
)
PARTS = {
    "to_socket_open": "navigation start to the socket's open (HTML, scripts, React's start)",
    "socket_open_to_hydrate": "socket open to the hydrate sent (socket.io's handshake)",
    "hydrate_to_rows_message": "hydrate sent to the message with the rows (the backend's events)",
    "rows_message_to_row": "that message to the first row in the DOM (React's render)",
}


def targets(results: dict[str, Any]) -> list[Target]:
    """Both targets, or none in a run that left the phase out."""
    if results.get("ops_first_paint_ms") is None:
        return []
    return [target for target, _ in TARGETS]


def _ms(figure: dict[str, float]) -> str:
    return f"{figure['p50']:,.0f} / {figure['p95']:,.0f} ms"


def markdown(results: dict[str, Any]) -> list[str]:
    """The section's lines; a line saying it was not measured in a run that left it out."""
    header = ["", "## The operator's console", ""]
    if results.get("ops_first_paint_ms") is None:
        return [*header, "Not measured in this run (`python -m bench.ops`)."]
    r = results["ratios"]
    full, empty = results["ops_first_paint_ms"], results["ops_first_paint_empty_ms"]
    after, empty_after = results["ops_first_paint_after_hydrate_ms"], results["ops_first_paint_empty_after_hydrate_ms"]
    lines = [
        *header,
        f"`/ops` (`reflex run --env prod`, page state in memory) in headless Chromium, logged in once through its "
        f"form; {results['ops_jobs']:,} finished jobs (mixed types, statuses and owners) written into a history "
        f"store of its own (SQLite) through the store's write path, as the history consumer writes them "
        f"({results['ops_store_write_s']:.1f} s). First paint: a new tab of the logged-in browser opens /ops; from "
        "its navigation start (performance.timeOrigin) to the first job row in the DOM (a MutationObserver, "
        "performance.now()). Baseline, same run, in turns with it: the same with the store empty, to its "
        "`No jobs.` line (Reflex's page start, socket and the console's events, with no list to read or draw). "
        "Filter change: on one loaded console, the status select's change event to the list showing only rows of "
        "that status.",
        "",
        f"| Figure (p50 / p95) | {results['ops_jobs']:,} jobs | Empty store (baseline) | vs baseline | Target "
        "| Result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    paint_target, filter_target = (target for target, _ in TARGETS)
    lines += [
        f"| First paint of the list | {_ms(full)} | {_ms(empty)} "
        f"| {r['ops_first_paint_vs_empty']['p50']:.2f}x / {r['ops_first_paint_vs_empty']['p95']:.2f}x "
        f"| {paint_target.text()} | {'PASS' if paint_target.passed(full['p95']) else 'FAIL'} |",
        f"| its part after the socket connected (from the hydrate sent) | {_ms(after)} | {_ms(empty_after)} "
        f"| {r['ops_after_hydrate_vs_empty']['p50']:.2f}x / {r['ops_after_hydrate_vs_empty']['p95']:.2f}x | - | - |",
    ]
    changes = results["ops_filter_change_ms"]
    lines += [
        f"| Status filter change | {_ms(changes)} | - | - | {filter_target.text()} "
        f"| {'PASS' if filter_target.passed(changes['p95']) else 'FAIL'} |",
        "",
        f"{full['samples']} first paints of each (after untimed loads that fill the browser's cache), "
        f"{changes['samples']} filter changes (failed, cancelled, succeeded in turn). Where the first paint's "
        "time goes (p50 / p95 of each part):",
        "",
        f"| Part | {results['ops_jobs']:,} jobs | Empty store |",
        "| --- | ---: | ---: |",
    ]
    split = results["ops_first_paint_parts_ms"]
    for key, text in PARTS.items():
        if key in split["full"]:
            empty_part = _ms(split["empty"][key]) if key in split["empty"] else "-"
            lines.append(f"| {text} | {_ms(split['full'][key])} | {empty_part} |")
    return lines
