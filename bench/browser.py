"""One real browser: headless Chromium starts a job from the page's form and times each change of its
card in the DOM.

A MutationObserver stamps each change of the card's step or status text with the page's clock
(performance.timeOrigin + performance.now(), Unix milliseconds; same machine, same clock as the worker).
"""

from __future__ import annotations

from playwright.async_api import async_playwright

from bench.arrivals import Arrival
from bench.pageclient import FINISHED
from stack.chromium import CHROMIUM, CHROMIUM_ARGS

# Records [unix_ms, step_text, status_text] at install and at each change; sets window.__jobDone at the end.
OBSERVE_JS = """({jobId, finished}) => {
  const card = `[data-testid=job-card][data-job-id="${jobId}"]`;
  const text = (id) => document.querySelector(`${card} [data-testid=${id}]`)?.textContent ?? "";
  window.__arrivals = [];
  let last = "";
  const record = () => {
    const now = performance.timeOrigin + performance.now();
    const step = text("job-step"), status = text("job-status");
    if (step + "|" + status === last) return;
    last = step + "|" + status;
    window.__arrivals.push([now, step, status]);
    window.__jobDone = finished.includes(status.trim().toLowerCase());
  };
  record();
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def _arrival(row: list[object]) -> Arrival:
    at, step_text, status = row
    step = int(str(step_text).split("/")[0].replace(",", ""))
    return Arrival(float(str(at)) / 1000, step, str(status).strip().lower() in FINISHED)


async def submit_and_watch(url: str, n: int, timeout_s: float) -> tuple[str, list[Arrival]]:
    """Open the page, start a job of `n` steps from its form; the job's id and its card's changes until it ends."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(timeout_s * 1000)
            await page.goto(url)
            await page.get_by_test_id("job-n-input").fill(str(n))
            await page.get_by_test_id("job-submit").click()
            card = page.get_by_test_id("job-card").first
            await card.wait_for()
            job_id = await card.get_attribute("data-job-id") or ""
            await page.evaluate(OBSERVE_JS, {"jobId": job_id, "finished": sorted(FINISHED)})
            await page.wait_for_function("() => window.__jobDone === true")
            rows: list[list[object]] = await page.evaluate("() => window.__arrivals")
        finally:
            await browser.close()
    return job_id, [_arrival(row) for row in rows]
