"""The progress hub's bookkeeping, pacing and single watcher per page, alone: no Redis (the hub is
not running), no app."""

from __future__ import annotations

import asyncio
import time

import pytest

from rxapp.hub import PAGE_UPDATES_PER_S, STATUS_FIRST_S, PageFeed, ProgressHub
from tasks.model import JobState, JobStatus
from tasks.progress import channel
from tests.conftest import run_async

JOB_IDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(4)]


async def watch(hub: ProgressHub, count: int, first: int = 0) -> list[PageFeed]:
    """`count` pages following the jobs round-robin, one job each."""
    feeds = [hub.feed(f"page-{first + i}") for i in range(count)]
    for i, feed in enumerate(feeds):
        await feed.follow({JOB_IDS[i % len(JOB_IDS)]})
    return feeds


def publish(hub: ProgressHub, job_ids: list[str]) -> None:
    """A progress message for each job, as the listener hands it over."""
    for job_id in job_ids:
        state = JobState(job_id, 1, 10, JobStatus.RUNNING, 0.0)
        hub._dispatch({"channel": channel(job_id).encode(), "data": state.to_json()})


def test_pages_with_updates_due_within_the_budget_get_every_message_and_more_are_paced_to_it() -> None:
    hub = ProgressHub()
    interval_s = hub.settings.progress_interval_s
    at_full_rate = round(PAGE_UPDATES_PER_S * interval_s)  # each page gets one update an interval

    first = run_async(watch(hub, at_full_rate))
    second = run_async(watch(hub, at_full_rate, first=at_full_rate))
    # Twice as many pages as the budget, but their jobs say nothing: nobody waits for them.
    assert hub.pace_s() == 0.0
    publish(hub, JOB_IDS)
    # Every page has an update due: each page's updates are twice the interval apart, the total unchanged.
    assert hub.pace_s() == pytest.approx(2 * interval_s)
    assert hub.channels == len(JOB_IDS)
    # Half of the pages took their updates and have nothing due: they no longer count.
    for feed in first:
        assert run_async(feed.next_states())
    assert hub.pace_s() == 0.0

    # Pages whose watchers end (their pages are gone) are no longer paced for, nor followed.
    for feed in first + second:
        claim = feed.claim()
        assert claim is not None
        run_async(feed.release(claim))
    assert hub.pace_s() == 0.0
    assert hub.channels == 0
    assert hub.pages == 0


def test_a_job_is_followed_while_some_page_follows_it() -> None:
    hub = ProgressHub()
    first, second = run_async(watch(hub, 2))
    run_async(first.unfollow({JOB_IDS[0]}))
    assert hub.channels == 1
    assert first.job_ids == set()
    assert second.job_ids == {JOB_IDS[1]}
    assert hub.pace_s() == 0.0


def test_a_page_has_one_feed_and_one_watcher_at_a_time() -> None:
    hub = ProgressHub()
    feed = hub.feed("page")
    assert hub.feed("page") is feed
    first = feed.claim()
    assert first is not None
    assert feed.claim() is None, "a second watcher of the same page is refused"
    run_async(feed.follow(JOB_IDS[:2]))
    # An ended watcher's late release does not free the place of the one after it.
    run_async(feed.release(first))
    second = feed.claim()
    assert second is not None
    run_async(feed.release(first))
    assert feed.claim() is None
    run_async(feed.release(second))
    assert hub.pages == 0, "a page without a socket and without a watcher is forgotten"


def test_a_status_change_ends_a_paced_pause_at_once_and_progress_waits_for_it() -> None:
    hub = ProgressHub()
    interval_s = hub.settings.progress_interval_s
    feeds = run_async(watch(hub, 4 * round(PAGE_UPDATES_PER_S * interval_s)))  # 4x the budget: paced
    mine, job_id = feeds[0], JOB_IDS[0]
    publish(hub, JOB_IDS)
    pause_s = hub.pace_s()
    assert pause_s == pytest.approx(4 * interval_s)

    async def timed(then: JobStatus, before: bool) -> tuple[float, list[JobState] | None]:
        """How long the page's next update takes to come, with `then` handed before it asks, or
        a moment after."""
        update = JobState(job_id, 2, 10, then, 0.0)
        started = time.monotonic()
        if before:
            hub._hand([mine], update)
        waiting = asyncio.ensure_future(mine.next_states())
        if not before:
            await asyncio.sleep(pause_s / 10)
            hub._hand([mine], update)
        states = await waiting
        return time.monotonic() - started, states

    async def scenario() -> None:
        # The job's first state here (running) is a change: taken without waiting out the pause.
        started = time.monotonic()
        first = await mine.next_states()
        assert first
        assert first[0].status is JobStatus.RUNNING
        assert time.monotonic() - started < pause_s / 2
        # More progress within the same status waits for the pace.
        took, states = await timed(JobStatus.RUNNING, before=True)
        assert took >= pause_s * 0.9
        assert [s.status for s in states or []] == [JobStatus.RUNNING]
        # The job ends while its page waits out a pause: the page gets it at once.
        took, states = await timed(JobStatus.SUCCEEDED, before=False)
        assert took < pause_s / 2, (took, pause_s)
        assert [s.status for s in states or []] == [JobStatus.SUCCEEDED]

    run_async(scenario())


def test_progress_goes_after_the_status_changes_handed_to_other_pages() -> None:
    hub = ProgressHub()
    mine, other, stuck = run_async(watch(hub, 3))
    claims = {feed: feed.claim() for feed in (mine, other, stuck)}

    def progress(step: int) -> JobState:
        return JobState(JOB_IDS[0], step, 10, JobStatus.RUNNING, 0.0)

    async def scenario() -> None:
        publish(hub, JOB_IDS[:2])  # each page's first state is a change of its own: none waits
        assert await mine.next_states()
        assert await other.next_states()
        # The other page's job ends while this page has progress: the end goes out first.
        hub._hand([mine], progress(2))
        hub._hand([other], JobState(JOB_IDS[1], 10, 10, JobStatus.SUCCEEDED, 0.0))
        mine_next = asyncio.ensure_future(mine.next_states())
        ended = await other.next_states()
        assert [state.status for state in ended or []] == [JobStatus.SUCCEEDED]
        await asyncio.sleep(STATUS_FIRST_S / 5)
        assert not mine_next.done(), "progress waits while the other page's end is being sent"
        sent = time.monotonic()
        await other.release(claims[other] or 0)  # its watcher sent the end, and ends
        assert [state.step for state in await mine_next or []] == [2]
        assert time.monotonic() - sent < STATUS_FIRST_S / 2

        # A page whose watcher never takes its status change holds progress back that long at most.
        hub._hand([stuck], JobState(JOB_IDS[2], 1, 10, JobStatus.RUNNING, 0.0))
        hub._hand([mine], progress(3))
        asked = time.monotonic()
        assert [state.step for state in await mine.next_states() or []] == [3]
        assert STATUS_FIRST_S * 0.9 <= time.monotonic() - asked < STATUS_FIRST_S * 3
        # Once that watcher ends, nothing holds progress back.
        await stuck.release(claims[stuck] or 0)
        hub._hand([mine], progress(4))
        asked = time.monotonic()
        assert [state.step for state in await mine.next_states() or []] == [4]
        assert time.monotonic() - asked < STATUS_FIRST_S / 2

    run_async(scenario())


def test_a_status_change_handed_before_its_pages_watcher_began_goes_ahead_of_progress_too() -> None:
    """A page whose socket reconnects, say: its job ended meanwhile, and its new watcher sends that first."""
    hub = ProgressHub()
    mine, late = run_async(watch(hub, 2))
    mine_claim, late_claim = mine.claim(), None

    async def scenario() -> None:
        nonlocal late_claim
        publish(hub, JOB_IDS[:1])
        assert await mine.next_states()
        hub._hand([late], JobState(JOB_IDS[1], 10, 10, JobStatus.SUCCEEDED, 0.0))  # no watcher yet
        hub._hand([mine], JobState(JOB_IDS[0], 2, 10, JobStatus.RUNNING, 0.0))
        late_claim = late.claim()
        mine_next = asyncio.ensure_future(mine.next_states())
        await asyncio.sleep(STATUS_FIRST_S / 5)
        assert not mine_next.done(), "progress waits for the end handed before the other page's watcher began"
        assert [state.status for state in await late.next_states() or []] == [JobStatus.SUCCEEDED]
        sent = time.monotonic()
        await late.release(late_claim or 0)
        assert [state.step for state in await mine_next or []] == [2]
        assert time.monotonic() - sent < STATUS_FIRST_S / 2
        await mine.release(mine_claim or 0)

    run_async(scenario())
