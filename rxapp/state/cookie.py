"""The browser's cookies: its id, and the ids of its unfinished jobs (an `rx.Cookie` read on each
(re)connect). Both are changed only by scripts run in the browser.

Every tab of a browser shares the cookie but has its own state. A tab that wrote its own list of
jobs (as an `rx.Cookie` var does when it is assigned) would drop the jobs other tabs added, so the
var is never assigned: tabs only add and remove ids, each change a read-modify-write in one
script run, with the same name, path and SameSite as the var.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

import reflex as rx
from reflex.event import EventSpec, EventType

from tasks.clients import clients
from tasks.model import JOB_ID_RE

COOKIE_NAME = "jobstream_jobs"
BROWSER_COOKIE_NAME = "jobstream_browser"
MAX_AGE_S = 400 * 24 * 3600  # browsers cap a cookie's life at 400 days

# Keep the well-formed ids a page load reads (the first `keep`), drop `remove`, put `add` first.
UPDATE_JS = """(({name, add, remove, keep, maxAge, idPattern}) => {
  const idRe = new RegExp(`^${idPattern}$`);
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
    return min(clients().settings.retention_s or MAX_AGE_S, MAX_AGE_S)


def jobs_cookie() -> rx.Cookie:
    """The state var's value: Reflex fills it with the browser's cookie whenever the page (re)connects.
    Reflex never writes it (the var is never assigned): its max age is the scripts' (`max_age_s`)."""
    return rx.Cookie("", name=COOKIE_NAME, path="/", same_site="lax")


def update_cookie(add: Iterable[str] = (), remove: Iterable[str] = ()) -> EventSpec:
    """Add and remove job ids in the browser's cookie (ids are checked uuid4 strings)."""
    args = {
        "name": COOKIE_NAME,
        "add": list(add),
        "remove": list(remove),
        "keep": clients().settings.max_jobs_per_browser,
        "maxAge": max_age_s(),
        "idPattern": JOB_ID_RE.pattern,
    }
    return rx.call_script(f"{UPDATE_JS}({json.dumps(args)})")


# The browser's id: the one its cookie holds, else `proposed` from now on. Read and written in one
# script run, so a tab opened later takes the id an earlier tab set instead of making its own.
BROWSER_JS = """(({name, proposed, maxAge, idPattern}) => {
  const idRe = new RegExp(`^${idPattern}$`);
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  const current = found ? found.slice(name.length + 1) : "";
  if (idRe.test(current)) return current;
  document.cookie = `${name}=${proposed}; path=/; max-age=${maxAge}; samesite=lax`;
  return proposed;
})"""


def identify_browser(callback: EventType[Any]) -> EventSpec:
    """Ask the browser for its id (made now if it has none); `callback` receives it."""
    args = {
        "name": BROWSER_COOKIE_NAME,
        "proposed": str(uuid.uuid4()),
        "maxAge": MAX_AGE_S,
        "idPattern": JOB_ID_RE.pattern,
    }
    return rx.call_script(f"{BROWSER_JS}({json.dumps(args)})", callback=callback)
