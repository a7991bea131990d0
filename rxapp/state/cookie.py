"""The cookie naming a browser's unfinished jobs, read and changed by scripts run in the browser.

Every tab of a browser shares the cookie but has its own state. A tab that wrote its own list of
jobs (as an `rx.Cookie` var does on every change) would drop the jobs other tabs added, so tabs
only add and remove ids, each change a read-modify-write in one script run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import reflex as rx
from reflex.event import EventSpec, EventType

from settings import get_settings

COOKIE_NAME = "jobstream_jobs"
MAX_AGE_S = 400 * 24 * 3600  # browsers cap a cookie's life at 400 days

# The cookie's raw (URL-encoded) value, "" when there is none.
READ_JS = f"""(() => {{
  const found = document.cookie.split("; ").find((c) => c.startsWith("{COOKIE_NAME}="));
  return found ? found.slice({len(COOKIE_NAME) + 1}) : "";
}})()"""

# Keep the well-formed ids a page load reads (the first `keep`), drop `remove`, put `add` first.
UPDATE_JS = """(({name, add, remove, keep, maxAge}) => {
  const idRe = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  let ids = [];
  try {
    ids = decodeURIComponent(found ? found.slice(name.length + 1) : "").split(",");
  } catch {}
  ids = [...new Set(ids.map((id) => id.trim()).filter((id) => idRe.test(id)))].slice(0, keep);
  ids = [...new Set([...add, ...ids.filter((id) => !remove.includes(id))])].slice(0, keep);
  document.cookie = `${name}=${encodeURIComponent(ids.join(","))}; path=/; max-age=${maxAge}; samesite=lax`;
})"""


def read_cookie(callback: EventType[str]) -> EventSpec:
    """Ask the browser for the cookie's value; `callback` receives it."""
    return rx.call_script(READ_JS, callback=callback)


def update_cookie(add: Iterable[str] = (), remove: Iterable[str] = ()) -> EventSpec:
    """Add and remove job ids in the browser's cookie (ids are checked uuid4 strings)."""
    settings = get_settings()
    args = {
        "name": COOKIE_NAME,
        "add": list(add),
        "remove": list(remove),
        "keep": settings.max_jobs_per_browser,
        "maxAge": min(settings.retention_s or MAX_AGE_S, MAX_AGE_S),
    }
    return rx.call_script(f"{UPDATE_JS}({json.dumps(args)})")
