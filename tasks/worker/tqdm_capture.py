"""tqdm bars inside a job are its progress: Gradio's `track_tqdm`, done in the worker.

`install` wraps tqdm's iteration and `update` once per process; while `capturing(ctx)` is active
every bar reports to that job's context (the outermost bar is its progress, any bar's iteration
may stop it on a cancel). Outside a job, bars behave exactly as tqdm's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import std

from tasks.worker.context import RunContext

# The job this process runs now: a Celery pool process runs one job at a time.
_current: RunContext | None = None
_original_iter = std.tqdm.__iter__
_original_update = std.tqdm.update


def _iter(bar: Any) -> Iterator[Any]:
    ctx = _current
    items = _original_iter(bar)
    return items if ctx is None else ctx.follow_bar(bar, items)


def _update(bar: Any, n: float | None = 1) -> bool | None:
    shown = _original_update(bar, n)
    ctx = _current
    if ctx is not None:
        ctx.bar_moved(bar, int(bar.n))
    return shown


def install() -> None:
    """Route every tqdm bar of this process through `_current` (idempotent)."""
    std.tqdm.__iter__ = _iter
    std.tqdm.update = _update


@contextmanager
def capturing(ctx: RunContext) -> Iterator[None]:
    """tqdm bars report to `ctx` inside this block."""
    global _current
    install()
    _current = ctx
    try:
        yield
    finally:
        _current = None
