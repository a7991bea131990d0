"""The progress hub's bookkeeping and pacing, alone: no Redis (the hub is not running), no app."""

from __future__ import annotations

import pytest

from rxapp.hub import PAGE_UPDATES_PER_S, ProgressHub, Subscription
from settings import get_settings
from tests.conftest import run_async

JOB_IDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(4)]


async def watch(hub: ProgressHub, count: int) -> list[Subscription]:
    """`count` subscriptions following the jobs round-robin, as pages watching one job each."""
    subs = [hub.subscription() for _ in range(count)]
    for i, sub in enumerate(subs):
        await sub.follow({JOB_IDS[i % len(JOB_IDS)]})
    return subs


def test_pages_within_the_budget_get_every_message_and_more_are_paced_to_it() -> None:
    hub = ProgressHub()
    interval_s = get_settings().progress_interval_s
    at_full_rate = round(PAGE_UPDATES_PER_S * interval_s)  # each page gets one update an interval

    first = run_async(watch(hub, at_full_rate))
    assert hub.pace_s() == 0.0
    second = run_async(watch(hub, at_full_rate))
    # Twice as many pages: each page's updates are twice the interval apart, the total unchanged.
    assert hub.pace_s() == pytest.approx(2 * interval_s)
    assert hub.channels == len(JOB_IDS)

    # Pages that stop watching are no longer paced for, and their jobs no longer followed.
    for sub in first + second:
        run_async(sub.close())
    assert hub.pace_s() == 0.0
    assert hub.channels == 0


def test_a_job_is_followed_while_some_subscription_follows_it() -> None:
    hub = ProgressHub()
    first, second = run_async(watch(hub, 2))
    run_async(first.unfollow({JOB_IDS[0]}))
    assert hub.channels == 1
    assert first.job_ids == set()
    assert second.job_ids == {JOB_IDS[1]}
    assert hub.pace_s() == 0.0
