"""This browser's jobs: submit, cancel, recover after a reload, and follow them live."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable

import reflex as rx
from reflex.event import EventHandler, EventSpec

from rxapp.hub import fetch_states, hub
from rxapp.jobview import JobView, job_view, page_title
from rxapp.session import is_new_session, keep_session_script, page_owner
from rxapp.state.form import FormState
from rxapp.state.notify import notify_ended
from tasks import service
from tasks.clients import clients
from tasks.jobtypes import InvalidParams
from tasks.model import (
    InvalidInput,
    JobNotFound,
    JobState,
    QueueFull,
    ServiceUnavailable,
    TooManyJobs,
    TooManySubmits,
    is_job_id,
)

# Finished cards a page keeps (its unfinished ones are all kept): the oldest go first.
FINISHED_CARDS_MAX = 50
# A page's jobs are looked up at most this often, however often it asks (load_jobs).
LOAD_EVERY_S = 2.0
NO_SESSION = "This page needs cookies to know your jobs: please allow them for this site, and reload."
REFUSALS = (InvalidInput, TooManyJobs, TooManySubmits, QueueFull, ServiceUnavailable)


def sentence(text: str) -> str:
    """A refusal's reason as a message: capitalised, with a full stop ("" stays "")."""
    if not text:
        return ""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def bounded(cards: list[JobView]) -> list[JobView]:
    """The cards, newest first, without the finished ones past FINISHED_CARDS_MAX."""
    finished = 0
    kept = []
    for card in cards:
        finished += not card.cancellable
        if card.cancellable or finished <= FINISHED_CARDS_MAX:
            kept.append(card)
    return kept


class JobsState(rx.State):
    """The jobs of this browser, newest first. The browser is their owner through its session
    cookie (rxapp.session), which the page's socket sends; scripts in the page cannot read it."""

    jobs: list[JobView] = []
    # The tab's title: the progress of the running jobs, "42% · Jobstream" (see page_title).
    tab_title: str = page_title([])
    error: str = ""
    # When this page last looked up its owner's jobs (load_jobs).
    _loaded_at: float = 0.0

    def _cards(self) -> list[JobView]:
        """The cards as stored, without Reflex's change-tracking proxy: they are only read, and
        replaced by assigning a new list to `jobs` (cheaper on every live update)."""
        return self.get_value("jobs")

    def _job_ids(self) -> set[str]:
        return {job.job_id for job in self._cards()}

    def _unfinished_ids(self) -> set[str]:
        return {job.job_id for job in self._cards() if job.cancellable}

    def _show(self, cards: list[JobView]) -> None:
        """Show these cards. The tab's title follows them, and is sent only when it changes."""
        self.jobs = cards
        title = page_title(cards)
        if title != self.tab_title:
            self.tab_title = title

    def _apply(self, states: Iterable[JobState]) -> list[JobView]:
        """Show the newest of these states on the cards of their jobs; the cards of the jobs that
        finished with them."""
        latest: dict[str, JobState] = {}
        for state in states:
            kept = latest.get(state.job_id)
            if kept is None or state.supersedes(kept.status, kept.step):
                latest[state.job_id] = state
        if not latest:
            return []
        ended: list[JobView] = []
        cards = []
        # One new list, not item by item: each item assignment goes through Reflex's state proxy.
        for card in self._cards():
            new = latest.get(card.job_id)
            if new is None or not new.supersedes(card.status, card.step):
                cards.append(card)
                continue
            cards.append(job_view(new, card))
            if new.status.finished:  # a finished card is never superseded: this one just ended
                ended.append(cards[-1])
        self._show(cards)
        return ended

    @rx.event
    async def load_jobs(self):
        """On page load: show the browser's unfinished jobs, and those that finished since it last
        looked once more (its index in Redis, see tasks.owners). Runs once per page load: a call
        within LOAD_EVERY_S of the last does nothing."""
        owner = page_owner(self)
        if owner is None:
            self.error = NO_SESSION
            return None
        if time.time() - self._loaded_at < LOAD_EVERY_S:
            return None
        self._loaded_at = time.time()
        keep: list[EventSpec] = []
        if is_new_session(self):  # the browser has no cookie yet: it gets one for this owner
            keep.append(rx.call_script(keep_session_script(owner, clients().settings, self._loaded_at)))
        try:
            ids = await asyncio.to_thread(service.owned_jobs, owner, clients())
        except ServiceUnavailable as exc:
            self.error = str(exc)
            return keep
        ids = ids[: clients().settings.max_unfinished_jobs]
        feed = hub.feed(self.router.session.client_token)
        followed = set(feed.job_ids)
        # Followed first, read second: nothing published in between is missed.
        await feed.follow(ids)
        try:
            states = await fetch_states(ids)
        except ServiceUnavailable as exc:
            await feed.unfollow(set(ids) - followed)
            self.error = str(exc)
            return keep
        known = self._job_ids()
        new = [job_view(states[job_id]) for job_id in ids if job_id in states and job_id not in known]
        # Ids come newest first: keep that order among jobs that started at once.
        for newer, older in itertools.pairwise(new):
            older.submitted_at = min(older.submitted_at, newer.submitted_at)
        self._show(bounded(sorted(self._cards() + new, key=lambda job: job.submitted_at, reverse=True)))
        self._apply(states.values())
        await feed.unfollow(set(ids) - self._unfinished_ids())
        return [*keep, JobsState.watch] if self._unfinished_ids() else keep

    @rx.event
    async def submit(self, form_data: dict):
        """Start a job of the form's type with the form's params; bad input, or a browser past its
        limits, shows why and creates nothing."""
        owner = page_owner(self)
        if owner is None:
            self.error = NO_SESSION
            return []
        return await self._start(form_data, owner)

    async def _start(self, form_data: dict, owner: str) -> list[EventSpec | EventHandler]:
        form = await self.get_state(FormState)
        try:
            job_type, params = form.params(form_data)
            state = await asyncio.to_thread(service.submit_job, job_type, params, clients(), owner)
        except InvalidParams as exc:
            self.error = sentence(form.refused(exc.errors))
            return []
        except REFUSALS as exc:
            self.error = sentence(str(exc))
            return []
        form.accepted()
        return await self._show_new(state)

    @rx.event
    async def rerun(self, job_id: str):
        """Run one of this page's finished jobs again: a new job, with the same type and params."""
        owner = page_owner(self)
        if owner is None or not is_job_id(job_id) or job_id not in self._job_ids() - self._unfinished_ids():
            return None
        return await self._rerun(job_id, owner)

    async def _rerun(self, job_id: str, owner: str) -> list[EventSpec | EventHandler] | None:
        """Run the owner's finished job again and show the new job's card; a refusal sets `error`.
        The caller has checked that its page shows the job (a card here, or a row of the history)."""
        try:
            state = await asyncio.to_thread(service.rerun_job, job_id, clients(), owner)
        except JobNotFound:
            self.error = "This job is gone: it was deleted after the retention period."
            return None
        except REFUSALS as exc:
            self.error = sentence(str(exc))
            return None
        return await self._show_new(state)

    async def _show_new(self, state: JobState) -> list[EventSpec | EventHandler]:
        """A job just submitted from this page: its card first, followed live."""
        self.error = ""
        self._show(bounded([job_view(state), *self._cards()]))
        # Followed, then its snapshot read once: a state published before the follow is not missed.
        feed = hub.feed(self.router.session.client_token)
        await feed.follow([state.job_id])
        with contextlib.suppress(ServiceUnavailable):  # its next publish comes through the feed
            self._apply((await fetch_states([state.job_id])).values())
        return [JobsState.watch]

    @rx.event
    def clear_error(self):
        """Another job type was chosen: a message about the last submit no longer applies."""
        self.error = ""

    @rx.event
    async def cancel(self, job_id: str):
        """Stop one of this page's unfinished jobs (the owner's only: see service.cancel_job)."""
        owner = page_owner(self)
        if owner is None or not is_job_id(job_id) or job_id not in self._unfinished_ids():
            return
        try:
            state = await asyncio.to_thread(service.cancel_job, job_id, clients(), owner)
        except JobNotFound:
            return
        except ServiceUnavailable as exc:
            self.error = str(exc)
            return
        self.error = ""
        self._apply([state])
        return

    @rx.event
    def dismiss(self, job_id: str):
        """Remove a finished job's card."""
        self._show([job for job in self._cards() if job.job_id != job_id or job.cancellable])

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
                    ended = self._apply(states)
                    still_running = self._unfinished_ids()
                    # Decided under the state's lock, which a submit holds while it follows its job.
                    done = feed.job_ids - still_running
                    if not still_running:
                        await feed.release(claim)
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
