"""This browser's jobs: submit, cancel, recover from the cookie, and follow them live."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable
from urllib.parse import unquote

import reflex as rx
from reflex.event import EventHandler, EventSpec

from rxapp.hub import fetch_states, hub
from rxapp.jobview import JobView, job_view, page_title
from rxapp.state.cookie import identify_browser, jobs_cookie, update_cookie
from rxapp.state.form import FormState
from rxapp.state.notify import notify_ended
from tasks import service
from tasks.clients import clients
from tasks.jobtypes import InvalidParams
from tasks.model import InvalidInput, JobNotFound, JobState, QueueFull, ServiceUnavailable, TooManyJobs, is_job_id
from tasks.owners import is_owner_id

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


def sentence(text: str) -> str:
    """A refusal's reason as a message: capitalised, with a full stop ("" stays "")."""
    if not text:
        return ""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


class JobsState(rx.State):
    """The jobs of this browser, newest first; the cookie holds the ids of the unfinished ones."""

    jobs: list[JobView] = []
    error: str = ""
    # The jobs cookie as the browser sent it on connecting; only scripts in the browser change it.
    cookie: str = jobs_cookie()
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
        for state in states:
            kept = latest.get(state.job_id)
            if kept is None or state.supersedes(kept.status, kept.step):
                latest[state.job_id] = state
        if not latest:
            return
        # One new list, not item by item: each item assignment goes through Reflex's state proxy.
        self.jobs = [
            job_view(new, job) if (new := latest.get(job.job_id)) and new.supersedes(job.status, job.step) else job
            for job in self._cards()
        ]

    @rx.var
    def tab_title(self) -> str:
        """The tab's title: the progress of the running jobs, "42% · Jobstream"."""
        return page_title(self.jobs)

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
        limit = clients().settings.max_jobs_per_browser
        try:
            indexed = await asyncio.to_thread(service.owned_jobs, browser_id, clients())
        except ServiceUnavailable:  # the cookie still names the jobs
            indexed = []
        from_cookie = ids_from_cookie(raw, limit)
        ids = list(dict.fromkeys(indexed[:limit] + from_cookie))
        feed = hub.feed(self.router.session.client_token)
        followed = set(feed.job_ids)
        # Followed first, read second: nothing published in between is missed.
        await feed.follow(ids)
        try:
            states = await fetch_states(ids)
        except ServiceUnavailable as exc:
            await feed.unfollow(set(ids) - followed)
            self.error = str(exc)
            return None
        known = self._job_ids()
        new = [job_view(states[job_id]) for job_id in ids if job_id in states and job_id not in known]
        # Ids come newest first: keep that order among jobs that started at once.
        for newer, older in itertools.pairwise(new):
            older.submitted_at = min(older.submitted_at, newer.submitted_at)
        self.jobs = sorted(self._cards() + new, key=lambda job: job.submitted_at, reverse=True)
        self._apply(states.values())
        await feed.unfollow(set(ids) - self._unfinished_ids())
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
        """Start a job of the form's type with the form's params; bad input, or a browser at its
        limit of unfinished jobs, shows why and creates nothing."""
        if not self._browser:
            self._pending_form = dict(form_data)
            return identify_browser(JobsState.recover)
        return await self._start(form_data)

    async def _start(self, form_data: dict) -> list[EventSpec | EventHandler]:
        form = await self.get_state(FormState)
        try:
            job_type, params = form.params(form_data)
            state = await asyncio.to_thread(service.submit_job, job_type, params, clients(), self._browser)
        except InvalidParams as exc:
            self.error = sentence(form.refused(exc.errors))
            return []
        except (InvalidInput, TooManyJobs, QueueFull, ServiceUnavailable) as exc:
            self.error = sentence(str(exc))
            return []
        form.accepted()
        return await self._show_new(state)

    @rx.event
    async def rerun(self, job_id: str):
        """Run one of this page's finished jobs again: a new job, with the same type and params."""
        if not is_job_id(job_id) or job_id not in self._job_ids() - self._unfinished_ids():
            return None
        try:
            state = await asyncio.to_thread(service.rerun_job, job_id, clients(), self._browser)
        except JobNotFound:
            self.error = "This job is gone: it was deleted after the retention period."
            return None
        except (InvalidInput, TooManyJobs, QueueFull, ServiceUnavailable) as exc:
            self.error = sentence(str(exc))
            return None
        return await self._show_new(state)

    async def _show_new(self, state: JobState) -> list[EventSpec | EventHandler]:
        """A job just submitted from this page: its card first, followed live, remembered in the cookie."""
        self.error = ""
        self.jobs = [job_view(state), *self._cards()]
        # Followed, then its snapshot read once: a state published before the follow is not missed.
        feed = hub.feed(self.router.session.client_token)
        await feed.follow([state.job_id])
        with contextlib.suppress(ServiceUnavailable):  # its next publish comes through the feed
            self._apply((await fetch_states([state.job_id])).values())
        return [update_cookie(add=[state.job_id]), JobsState.watch]

    @rx.event
    def clear_error(self):
        """Another job type was chosen: a message about the last submit no longer applies."""
        self.error = ""

    @rx.event
    async def cancel(self, job_id: str):
        if not is_job_id(job_id) or job_id not in self._unfinished_ids():
            return None
        try:
            state = await asyncio.to_thread(service.cancel_job, job_id, clients())
        except JobNotFound:
            return None
        except ServiceUnavailable as exc:
            self.error = str(exc)
            return None
        self.error = ""
        self._apply([state])
        return update_cookie(remove=[job_id]) if state.status.finished else None

    @rx.event
    def dismiss(self, job_id: str):
        """Remove a finished job's card."""
        self.jobs = [job for job in self._cards() if job.job_id != job_id or job.cancellable]

    @rx.event(background=True)
    async def watch(self):
        """Apply what the page's feed hands over until its jobs have finished or the page has gone.
        One watcher per page: a call while one runs returns at once."""
        feed = hub.feed(self.router.session.client_token)
        claim = feed.claim()
        if claim is None:
            return
        try:
            while (states := await feed.next_states()) is not None:
                async with self:
                    running_before = self._unfinished_ids()
                    if states:
                        self._apply(states)
                    still_running = self._unfinished_ids()
                    ended = [job for job in self._cards() if job.job_id in running_before - still_running]
                    # Decided under the state's lock, which a submit holds while it follows its job.
                    done = feed.job_ids - still_running
                    if not still_running:
                        await feed.release(claim)
                finished = [state.job_id for state in states if state.status.finished]
                if finished:
                    yield update_cookie(remove=finished)
                if ended:
                    yield notify_ended(ended)
                await feed.unfollow(done)
                if not still_running:
                    return
        except ServiceUnavailable:
            await asyncio.sleep(1)
            await feed.release(claim)
            yield JobsState.watch
        finally:
            await feed.release(claim)
