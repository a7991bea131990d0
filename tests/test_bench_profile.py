"""The bench's breakdown of the backend's py-spy samples (bench.profile), on stacks as py-spy writes them."""

from __future__ import annotations

import pytest

from bench.profile import BUCKETS, NATIVE, OTHER, breakdown, bucket, summary

# The frames every stack of granian's worker starts with (`reflex run` is granian's supervisor).
ROOT = (
    "<module> (reflex:8);run (reflex/reflex.py:829);run_granian_backend_prod (reflex/utils/exec.py:1161);"
    "MPServer._spawn_asgi_lifespan_worker (granian/server/mp.py:249);"
    "BaseEventLoop._run_once (asyncio/base_events.py:1906)"
)
WATCH = (
    f"{ROOT};Handle._run (asyncio/events.py:80);"
    "process_event (reflex_base/event/processor/base_state_processor.py:120);JobsState.watch (rxapp/state/jobs.py:233)"
)
EXIT = f"{WATCH};StateProxy.__aexit__ (reflex/istate/proxy.py:324)"
EMIT = (
    f"{EXIT};EventContext.emit_delta (reflex_base/event/context.py:90);EventNamespace.emit_update (reflex/app.py:2370)"
)


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        # The innermost frame that a rule names decides: the standard library's JSON under socket.io is the emit,
        (f"{EMIT};AsyncServer.emit (socketio/async_server.py:180);dumps (json/__init__.py:231)", "emit"),
        # under Reflex's JSON of an update the delta, whoever sends it.
        (f"{EMIT};_sio_dumps (reflex/app.py:140);json_dumps (reflex_base/utils/format.py:80)", "delta"),
        (
            f"{EXIT};BaseState._get_resolved_delta (reflex/state.py:1955);build_delta (reflex/istate/delta.py:293)",
            "delta",
        ),
        (
            f"{EXIT};StateProxy.__aexit__ (reflex/istate/proxy.py:333);Lock.release (asyncio/locks.py:140)",
            "reflex_state",
        ),
        # The app's own frames count for the app; what it calls in Reflex counts for Reflex,
        (f"{WATCH};JobsState._apply (rxapp/state/jobs.py:88);job_view (rxapp/jobview.py:126)", "app"),
        (
            f"{WATCH};JobsState._apply (rxapp/state/jobs.py:88);StateProxy.__setattr__ (reflex/istate/proxy.py:400)",
            "reflex_state",
        ),
        # except Reflex's read of a var without its proxy: its caller decides.
        (f"{WATCH};JobsState._cards (rxapp/state/jobs.py:71);BaseState.get_value (reflex/state.py:2005)", "app"),
        (f"{ROOT};_run_once (asyncio/base_events.py:1922)", OTHER),  # the CLI's frames at the root name nothing
        ("", NATIVE),  # no Python frame: native code
        (f"{ROOT};EpollSelector.select (selectors.py:468)", None),  # idle: waiting for the next event
    ],
)
def test_a_sample_counts_for_its_innermost_named_frame(stack: str, expected: str | None) -> None:
    assert bucket(stack) == expected


def test_the_breakdown_adds_up_each_stacks_count_and_leaves_idle_samples_out() -> None:
    lines = [
        f"{EMIT};AsyncServer.emit (socketio/async_server.py:180) 6\n",
        f"{WATCH};JobsState._unfinished_ids (rxapp/state/jobs.py:77) 3\n",
        f"{WATCH};JobsState._unfinished_ids (rxapp/state/jobs.py:78) 1\n",
        f"{ROOT};EpollSelector.select (selectors.py:468) 50\n",
        " 2\n",
    ]
    counts = breakdown(lines)
    assert counts == {"emit": 6, "app": 4, NATIVE: 2}
    figures = summary(counts, ms_per_update=0.3)
    assert figures["samples"] == 12
    assert list(figures["buckets"]) == list(BUCKETS)
    assert figures["buckets"]["emit"]["share"] == pytest.approx(0.5)
    assert figures["buckets"]["app"]["ms_per_update"] == pytest.approx(0.1)
    assert figures["buckets"]["delta"] == {"samples": 0, "share": 0.0, "ms_per_update": 0.0}
    assert sum(b["ms_per_update"] for b in figures["buckets"].values()) == pytest.approx(0.3)
