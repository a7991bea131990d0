"""Browser notifications when a job of the page ends while its tab is hidden. The page asks for the
permission only when the bell is clicked; the browser decides, and remembers it per site."""

from __future__ import annotations

import json
from collections.abc import Iterable

import reflex as rx
from reflex.event import EventSpec

from rxapp.jobview import JobView

PERMISSIONS = ("default", "granted", "denied", "unsupported")

PERMISSION_JS = "'Notification' in window ? Notification.permission : 'unsupported'"
REQUEST_JS = "'Notification' in window ? Notification.requestPermission() : 'unsupported'"
# Shown only when the person cannot see the page: a visible page says it on the card.
NOTIFY_JS = """(({ended}) => {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  for (const {tag, title, body} of ended) {
    try {
      new Notification(title, {tag, body});
    } catch {}  // a browser that only notifies through a service worker
  }
})"""


def notify_script(jobs: Iterable[JobView]) -> str:
    """A notification per job that just ended ("Count: succeeded", its params below), if the tab is
    hidden and the person allowed them. Titles and params are data: they reach the script as JSON."""
    ended = [
        {"tag": job.job_id, "title": f"{job.title}: {job.status}", "body": job.params_text or job.job_id}
        for job in jobs
    ]
    return f"{NOTIFY_JS}({json.dumps({'ended': ended})})"


def notify_ended(jobs: Iterable[JobView]) -> EventSpec:
    return rx.call_script(notify_script(jobs))


class NotifyState(rx.State):
    """What the browser says about notifications for this site, for the bell's look."""

    permission: str = ""  # one of PERMISSIONS; "" until the page has said

    @rx.event
    def load(self):
        """Read the permission (reading it never asks)."""
        return rx.call_script(PERMISSION_JS, callback=NotifyState.set_permission)

    @rx.event
    def ask(self):
        """The bell was clicked: ask the browser, which asks the person unless they already answered."""
        return rx.call_script(REQUEST_JS, callback=NotifyState.set_permission)

    @rx.event
    def set_permission(self, permission: str):
        if permission in PERMISSIONS:
            self.permission = permission
