"""The cookie naming a browser's unfinished jobs: an `rx.Cookie` read on each (re)connect, changed
by scripts run in the browser.

Every tab of a browser shares the cookie but has its own state. A tab that wrote its own list of
jobs (as an `rx.Cookie` var does when it is assigned) would drop the jobs other tabs added, so the
var is never assigned: tabs only add and remove ids, each change a read-modify-write in one
script run, with the same name, path, SameSite and max age as the var.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import reflex as rx
from reflex.event import EventSpec

from settings import get_settings

COOKIE_NAME = "jobstream_jobs"
MAX_AGE_S = 400 * 24 * 3600  # browsers cap a cookie's life at 400 days

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


def max_age_s() -> int:
    """The jobs' retention: an id in the cookie is worth keeping as long as its job is."""
    return min(get_settings().retention_s or MAX_AGE_S, MAX_AGE_S)


def jobs_cookie() -> rx.Cookie:
    """The state var's value: Reflex fills it with the browser's cookie whenever the page (re)connects."""
    return rx.Cookie("", name=COOKIE_NAME, path="/", same_site="lax", max_age=max_age_s())


def update_cookie(add: Iterable[str] = (), remove: Iterable[str] = ()) -> EventSpec:
    """Add and remove job ids in the browser's cookie (ids are checked uuid4 strings)."""
    args = {
        "name": COOKIE_NAME,
        "add": list(add),
        "remove": list(remove),
        "keep": get_settings().max_jobs_per_browser,
        "maxAge": max_age_s(),
    }
    return rx.call_script(f"{UPDATE_JS}({json.dumps(args)})")
