"""Issue 16's console figures: the operator's console (/ops) in headless Chromium with `ops_jobs` finished
jobs in the history store: the first paint of its list, and a change of its status filter.

The jobs go in through the store's own write path (bench.ops_store) into a database of this phase's own,
and into Redis' job index as their submits would have. The app is `reflex run --env prod` with the console
on; Chromium logs in once through the form, then each first paint is a new tab of that logged-in browser
opening /ops. The baseline is the same first paint with the store empty ("No jobs."), measured in the same
run, in turns with the full one (the store filled, then emptied again): Reflex's own page start, socket
and events on this machine, with no list to read or draw.

`python -m bench.ops [--quick]` runs this phase alone (on the bench's environment, or the one given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import BrowserContext, Page, ViewportSize, async_playwright

from bench import ops_report, ops_store
from bench.config import FULL, QUICK, Config
from bench.measure import Tick, summarize
from bench.stack import BenchError, BenchStack
from bench.webapp import ReflexApp
from settings import use_environment
from stack.chromium import CHROMIUM, CHROMIUM_ARGS
from tasks.history.store import HistoryStore
from tasks.ops import sessions
from tasks.ops.passwords import hash_password

PASSWORD = "bench operator password"
# The filter changes cycle through these, so each one changes every row shown.
FILTER_CYCLE = ("failed", "cancelled", "succeeded")
# Loads of /ops before the timed ones: the browser's cache holds the page's scripts, as a person's would.
WARM_UP_LOADS = 2
# The empty and the full store's first paints take turns this many times.
ROUNDS = 4
TIMEOUT_S = 60.0
VIEWPORT: ViewportSize = {"width": 1000, "height": 800}

# Runs in every tab before the page's own scripts. Stamps, in performance.now() (milliseconds since the
# tab's navigation started, performance.timeOrigin): the page's socket open, its hydrate sent (Reflex puts
# it in socket.io's CONNECT packet), the first message that brings rows, and the first job row (or the
# "No jobs." line) in the DOM.
TIMING_JS = """(() => {
  const t = {socketOpen: null, hydrateSent: null, rowsArrived: null, row: null, empty: null};
  window.__opsTimes = t;
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      if (!String(args[0]).includes("_event")) return;
      this.addEventListener("open", () => { if (t.socketOpen === null) t.socketOpen = performance.now(); });
      this.addEventListener("message", (e) => {
        if (t.rowsArrived === null && typeof e.data === "string" && /"rows(_rx_state_)?":\\[\\{/.test(e.data))
          t.rowsArrived = performance.now();
      });
      const send = this.send.bind(this);
      this.send = (data) => {
        if (t.hydrateSent === null && typeof data === "string" && data.includes("hydrate"))
          t.hydrateSent = performance.now();
        return send(data);
      };
    }
  };
  const look = () => {
    if (t.row === null && document.querySelector('[data-testid="ops-row"]')) t.row = performance.now();
    if (t.empty === null && document.querySelector('[data-testid="ops-empty"]')) t.empty = performance.now();
  };
  new MutationObserver(look).observe(document, {childList: true, subtree: true});
})()"""

# Arms one filter change: the status select's change event (seen before React's own listener) starts
# the clock; it stops when every row shown has that status.
FILTER_JS = """(status) => {
  const f = {status, changed: null, done: null};
  window.__opsFilter = f;
  const rowsShowOnly = () => {
    const rows = document.querySelectorAll('[data-testid="ops-row"]');
    return rows.length > 0 && [...rows].every((row) => row.dataset.status === status);
  };
  const onChange = (e) => {
    if (e.target?.dataset?.testid !== "ops-filter-status") return;
    f.changed = performance.now();
    document.removeEventListener("change", onChange, true);
    const observer = new MutationObserver(() => {
      if (f.done === null && rowsShowOnly()) { f.done = performance.now(); observer.disconnect(); }
    });
    observer.observe(document.body, {childList: true, subtree: true, attributes: true, characterData: true});
  };
  document.addEventListener("change", onChange, true);
}"""

# Which keys this phase adds (each None in a run that leaves it out).
KEYS = (
    "ops_jobs",
    "ops_store_write_s",
    "ops_first_paint_ms",
    "ops_first_paint_after_hydrate_ms",
    "ops_first_paint_empty_ms",
    "ops_first_paint_empty_after_hydrate_ms",
    "ops_first_paint_parts_ms",
    "ops_filter_change_ms",
)
TICKS = 3


@dataclass
class Paint:
    """One first paint of /ops, in milliseconds since its navigation started."""

    socket_open: float
    hydrate_sent: float
    shown: float  # the first row, or the "No jobs." line
    rows_arrived: float | None

    @property
    def after_hydrate(self) -> float:
        return self.shown - self.hydrate_sent


@dataclass
class Measured:
    empty: list[Paint] = field(default_factory=list)
    full: list[Paint] = field(default_factory=list)
    filter_changes: list[float] = field(default_factory=list)


# -- the browser -----------------------------------------------------------------------------------


async def log_in(context: BrowserContext, url: str) -> None:
    """Through the form, as a person does: the context keeps the session's cookie."""
    page = await context.new_page()
    await page.goto(f"{url}/ops")
    await page.get_by_test_id("ops-password").fill(PASSWORD)
    await page.get_by_test_id("ops-login").click()
    await page.get_by_test_id("ops-console").wait_for()
    if not any(cookie["name"] == sessions.COOKIE_NAME for cookie in await context.cookies()):
        raise BenchError("the console's login set no session cookie")
    await page.close()


async def first_paint(context: BrowserContext, url: str, expect_rows: bool) -> tuple[Paint, Page]:
    """A new tab of the logged-in browser opens /ops: its times until the list shows (a row, or "No jobs.")."""
    page = await context.new_page()
    await page.goto(f"{url}/ops", wait_until="commit")
    what = "row" if expect_rows else "empty"
    await page.wait_for_function(f"() => window.__opsTimes && window.__opsTimes.{what} !== null")
    t = await page.evaluate("() => window.__opsTimes")
    if t["socketOpen"] is None or t["hydrateSent"] is None:
        raise BenchError(f"the page's socket was not seen: {t}")
    if expect_rows and t["empty"] is not None:
        raise BenchError("the console said 'No jobs.' with the store full")
    return Paint(t["socketOpen"], t["hydrateSent"], t[what], t["rowsArrived"]), page


async def first_paints(
    context: BrowserContext, url: str, repeats: int, expect_rows: bool, warm_up: int = 0
) -> list[Paint]:
    paints = []
    for i in range(warm_up + repeats):
        paint, page = await first_paint(context, url, expect_rows)
        await page.close()
        if i >= warm_up:
            paints.append(paint)
    return paints


async def filter_changes(context: BrowserContext, url: str, repeats: int) -> list[float]:
    """On one loaded console, the status filter changed `repeats` times: each from the select's change to
    the list showing only rows of that status."""
    _, page = await first_paint(context, url, expect_rows=True)
    select = page.get_by_test_id("ops-filter-status")
    samples = []
    for i in range(repeats):
        status = FILTER_CYCLE[i % len(FILTER_CYCLE)]
        await page.evaluate(FILTER_JS, status)
        await select.select_option(status)
        await page.wait_for_function("() => window.__opsFilter.done !== null")
        f = await page.evaluate("() => window.__opsFilter")
        samples.append(f["done"] - f["changed"])
    await page.close()
    return samples


async def measure(
    url: str, repeats: int, fill_store: Callable[[], object], clear_store: Callable[[], object]
) -> Measured:
    """The empty console's first paints and the full one's, in ROUNDS turns (the store filled, then emptied
    again), so that a shared machine's slower or faster minutes fall on both alike; then the full console's
    filter changes."""
    measured = Measured()
    turns = [len(range(i, repeats, ROUNDS)) for i in range(min(ROUNDS, repeats))]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(TIMEOUT_S * 1000)
            await context.add_init_script(TIMING_JS)
            await log_in(context, url)
            for turn, count in enumerate(turns):
                if turn:
                    await asyncio.to_thread(clear_store)
                warm_up = WARM_UP_LOADS if turn == 0 else 0
                measured.empty += await first_paints(context, url, count, expect_rows=False, warm_up=warm_up)
                await asyncio.to_thread(fill_store)
                measured.full += await first_paints(context, url, count, expect_rows=True)
            measured.filter_changes = await filter_changes(context, url, repeats)
        finally:
            await browser.close()
    return measured


# -- the phase -------------------------------------------------------------------------------------


def figures(paints: list[Paint], pick: Callable[[Paint], float]) -> dict[str, float]:
    return summarize([pick(paint) for paint in paints], (50, 95), "")


def parts(paints: list[Paint]) -> dict[str, dict[str, float]]:
    """Where a first paint's time goes (p50 of each part): navigation to the socket's open (the page's
    HTML, scripts and React's start), open to the hydrate sent (socket.io's handshake), the hydrate to the
    rows' message (the backend's events), that message to the first row in the DOM (React's render)."""
    split = {
        "to_socket_open": figures(paints, lambda p: p.socket_open),
        "socket_open_to_hydrate": figures(paints, lambda p: p.hydrate_sent - p.socket_open),
    }
    rows_at = [(p, p.rows_arrived) for p in paints if p.rows_arrived is not None]
    if len(rows_at) >= 2:
        split["hydrate_to_rows_message"] = summarize([at - p.hydrate_sent for p, at in rows_at], (50, 95), "")
        split["rows_message_to_row"] = summarize([p.shown - at for p, at in rows_at], (50, 95), "")
    return split


def run(stack: BenchStack, cfg: Config, tick: Tick) -> dict[str, Any]:
    """Every figure of this phase; each key None when the run leaves it out (`ops_jobs` 0)."""
    if not cfg.ops_jobs:
        return dict.fromkeys(KEYS)
    stack.flush_redis()
    path = stack.settings.run_dir / f"history-ops-bench-{uuid.uuid4().hex[:8]}.db"
    database_url = f"sqlite:///{path}"
    store = HistoryStore(database_url)
    store.migrate()
    env = {"OPS_PASSWORD_HASH": hash_password(PASSWORD), "HISTORY_DATABASE_URL": database_url}
    filled: list[float] = []
    try:
        with ReflexApp(stack, env=env) as web:
            tick("console app started")
            measured = asyncio.run(
                measure(
                    web.url,
                    cfg.ops_repeats,
                    lambda: filled.append(ops_store.fill(stack, store, cfg.ops_jobs)),
                    store.clear,
                )
            )
            tick("console first paint")
    finally:
        store.close()
        for leftover in path.parent.glob(f"{path.name}*"):
            leftover.unlink()
    tick("console filter change")
    return {
        "ops_jobs": cfg.ops_jobs,
        "ops_store_write_s": statistics.median(filled),
        "ops_first_paint_ms": figures(measured.full, lambda p: p.shown),
        "ops_first_paint_after_hydrate_ms": figures(measured.full, lambda p: p.after_hydrate),
        "ops_first_paint_empty_ms": figures(measured.empty, lambda p: p.shown),
        "ops_first_paint_empty_after_hydrate_ms": figures(measured.empty, lambda p: p.after_hydrate),
        "ops_first_paint_parts_ms": {"full": parts(measured.full), "empty": parts(measured.empty)},
        "ops_filter_change_ms": summarize(measured.filter_changes, (50, 95), ""),
    }


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """The full console's first paint over the empty one's (p50 and p95), whole and after the hydrate."""
    if results.get("ops_first_paint_ms") is None:
        return {}
    full, empty = results["ops_first_paint_ms"], results["ops_first_paint_empty_ms"]
    after, empty_after = results["ops_first_paint_after_hydrate_ms"], results["ops_first_paint_empty_after_hydrate_ms"]
    return {
        "ops_first_paint_vs_empty": {p: full[p] / empty[p] for p in ("p50", "p95")},
        "ops_after_hydrate_vs_empty": {p: after[p] / empty_after[p] for p in ("p50", "p95")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ops", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick run's sizes")
    args = parser.parse_args(argv)
    settings = use_environment("bench")
    cfg = QUICK if args.quick else FULL
    with BenchStack(settings) as stack:
        results = run(stack, cfg, lambda done: print(done, file=sys.stderr))
    results["ratios"] = ratios(results)
    print(json.dumps(results, indent=2))
    print("\n".join(ops_report.markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
