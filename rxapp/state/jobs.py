"""This browser's jobs: submit, cancel, recover from the cookie, and follow them live."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from urllib.parse import unquote

import redis
import reflex as rx
from reflex.event import EventHandler, EventSpec

from rxapp.hub import PRESENCE_CHECK_S, RESYNC, hub
from rxapp.jobview import JobView, is_newer, job_view
from rxapp.state.cookie import identify_browser, jobs_cookie, update_cookie
from settings import get_settings
from tasks import owners, service
from tasks.clients import clients
from tasks.joblog import JobLogError
from tasks.model import InvalidInput, JobNotFound, JobState, TooManyJobs, is_job_id
from tasks.owners import is_owner_id

# A page that lost its socket gets this long to come back before its watcher ends.
RECONNECT_GRACE_S = 15.0
# A browser cookie holds at most ~4 KB; anything longer is not ours and is not parsed.
COOKIE_MAX_CHARS = 8192


def ids_from_cookie(raw: str, limit: int) -> list[str]:
    """The well-formed job ids in a cookie value, first `limit` of them, without repeats."""
    if len(raw) > COOKIE_MAX_CHARS:
        return []
    ids: list[str] = []
    for part in unquote(raw).split(","):
        job_id = part.strip()
        if is_job_id(job_id) and job_id not in ids:
            ids.append(job_id)
            if len(ids) == limit:
                break
    return ids


async def fetch_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """Current states of these jobs; unknown ones are left out."""

    async def one(job_id: str) -> JobState | None:
        try:
            return await asyncio.to_thread(service.get_job, job_id, clients())
        except JobNotFound:
            return None

    states = await asyncio.gather(*(one(job_id) for job_id in job_ids))
    return {state.job_id: state for state in states if state is not None}


class PagePresence:
    """Whether the page a watcher serves is still open, allowing a dropped socket time to return."""

    def __init__(self, client_token: str) -> None:
        self.client_token = client_token
        self.gone_since: float | None = None
        self.checked_at = 0.0

    def gone(self) -> bool:
        """Checked at most every PRESENCE_CHECK_S: a watcher calls this on each update of its page."""
        now = time.monotonic()
        if now - self.checked_at < PRESENCE_CHECK_S:
            return False
        self.checked_at = now
        if hub.is_connected(self.client_token):
            self.gone_since = None
            return False
        if self.gone_since is None:
            self.gone_since = now
        return now - self.gone_since > RECONNECT_GRACE_S


class JobsState(rx.State):
    """The jobs of this browser, newest first; the cookie holds the ids of the unfinished ones."""

    jobs: list[JobView] = []
    error: str = ""
    # The jobs cookie as the browser sent it on connecting; only scripts in the browser change it.
    cookie: str = jobs_cookie()
    # Each new watcher takes the next number; an older one sees it is superseded and ends.
    _watch_gen: int = 0
    # The browser's id (its cookie, read by a script on load): whose jobs count against the limit.
    _browser: str = ""
    # A form submitted before the browser's id was known, sent once it is.
    _pending_form: dict | None = None

    def _cards(self) -> list[JobView]:
        """The cards as stored, without Reflex's change-tracking proxy: they are only read, and
        replaced by assigning a new list to `jobs` (cheaper on every live update)."""
        return self.get_value("jobs")

    def _job_ids(self) -> set[str]:
        return {job.job_id for job in self._cards()}

    def _unfinished_ids(self) -> set[str]:
        return {job.job_id for job in self._cards() if job.cancellable}

    def _apply(self, states: Iterable[JobState]) -> None:
        latest: dict[str, JobState] = {}
        for state in states:  # the furthest state of each job, whatever order they came in
            kept = latest.get(state.job_id)
            if kept is None or (not kept.status.finished and (state.status.finished or state.step >= kept.step)):
                latest[state.job_id] = state
        if not latest:
            return
        # One new list, not item by item: each item assignment goes through Reflex's state proxy.
        self.jobs = [
            job_view(new, job.submitted_at) if (new := latest.get(job.job_id)) and is_newer(new, job) else job
            for job in self._cards()
        ]

    @rx.event
    def load_jobs(self):
        """On page load: learn the browser's id, then `recover` its jobs."""
        return identify_browser(JobsState.recover)

    @rx.event
    async def recover(self, browser_id: str):
        """Show the browser's jobs: those its index in Redis holds, then those named in its cookie.
        Finished and unknown ones leave the cookie (and the index) once shown."""
        if not is_owner_id(browser_id):
            self._pending_form = None
            self.error = "This page needs cookies to remember your jobs: please allow them for this site."
            return None
        self._browser = browser_id
        raw = self.cookie if isinstance(self.cookie, str) else ""  # a client other than a browser may send anything
        limit = get_settings().max_jobs_per_browser
        try:
            indexed = await asyncio.to_thread(owners.recent, clients().redis, browser_id)
        except redis.RedisError:  # the cookie still names the jobs
            indexed = []
        from_cookie = ids_from_cookie(raw, limit)
        ids = list(dict.fromkeys(indexed[:limit] + from_cookie))
        try:
            states = await fetch_states(ids)
        except (JobLogError, OSError) as exc:
            self.error = f"Cannot read jobs right now: {exc}"
            return None
        known = self._job_ids()
        new = [job_view(states[job_id]) for job_id in ids if job_id in states and job_id not in known]
        # Ids come newest first: keep that order among jobs that started at once.
        for newer, older in itertools.pairwise(new):
            older.submitted_at = min(older.submitted_at, newer.submitted_at)
        self.jobs = sorted(self._cards() + new, key=lambda job: job.submitted_at, reverse=True)
        self._apply(states.values())
        events: list[EventSpec | EventHandler] = []
        if raw:  # also drops what is not a job id
            gone = [job_id for job_id in from_cookie if job_id not in states or states[job_id].status.finished]
            events.append(update_cookie(remove=gone))
        if self._pending_form is not None:  # submitted before the browser's id was known
            form, self._pending_form = self._pending_form, None
            events += await self._start(form)  # with a watcher when it started a job
        if JobsState.watch not in events and self._unfinished_ids():
            events.append(JobsState.watch)
        return events

    @rx.event
    async def submit(self, form_data: dict):
        """Start a job of N steps; bad input, or a browser at its limit of unfinished jobs, shows a
        message and creates nothing."""
        if not self._browser:
            self._pending_form = dict(form_data)
            return identify_browser(JobsState.recover)
        return await self._start(form_data)

    async def _start(self, form_data: dict) -> list[EventSpec | EventHandler]:
        try:
            state = await asyncio.to_thread(service.submit_job, form_data.get("n"), clients(), self._browser)
        except InvalidInput as exc:
            self.error = str(exc).capitalize() + "."
            return []
        except TooManyJobs as exc:
            self.error = str(exc)
            return []
        except Exception as exc:  # noqa: BLE001 - Redis or the Celery broker down: say so, create nothing
            self.error = f"The job could not be queued: {exc}"
            return []
        self.error = ""
        self.jobs = [job_view(state), *self._cards()]
        return [update_cookie(add=[state.job_id]), JobsState.watch]

    @rx.event
    async def cancel(self, job_id: str):
        if not is_job_id(job_id) or job_id not in self._unfinished_ids():
            return None
        try:
            state = await asyncio.to_thread(service.cancel_job, job_id, clients())
        except JobNotFound:
            return None
        self._apply([state])
        return update_cookie(remove=[job_id]) if state.status.finished else None

    @rx.event
    def dismiss(self, job_id: str):
        """Remove a finished job's card."""
        self.jobs = [job for job in self._cards() if job.job_id != job_id or job.cancellable]

    @rx.event(background=True)
    async def watch(self):
        """Follow this browser's unfinished jobs until they finish or the page goes away."""
        token = self.router.session.client_token
        async with self:
            self._watch_gen += 1
            generation = self._watch_gen
            job_ids = self._unfinished_ids()
        sub = hub.subscription()
        page = PagePresence(token)
        try:
            await sub.follow(job_ids)
            # Subscribed first, read second: nothing published in between is missed.
            updates: list[JobState | None] = [RESYNC]
            while True:
                states: list[JobState] = [u for u in updates if u is not RESYNC]
                if RESYNC in updates:
                    states += (await fetch_states(sub.job_ids)).values()
                async with self:
                    if self._watch_gen != generation:
                        return
                    if states:
                        self._apply(states)
                    still_running = self._unfinished_ids()
                finished = [state.job_id for state in states if state.status.finished]
                if finished:
                    yield update_cookie(remove=finished)
                if not still_running:
                    return
                await sub.unfollow(sub.job_ids - still_running)
                if page.gone():
                    return
                if pause_s := hub.pace_s():
                    await asyncio.sleep(pause_s)
                updates = await sub.next_updates(timeout_s=1.0)
        except (JobLogError, OSError):
            await asyncio.sleep(1)
            yield JobsState.watch
        finally:
            await sub.close()
