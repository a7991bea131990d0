"""Job types the tests run, loaded through JOB_MODULES (set by the test environment) exactly as a
team's own module would be: one of each shape a job can have."""

from __future__ import annotations

import enum
import logging
import sys
import time
from typing import Annotated, Literal

from pydantic import Field
from tqdm import tqdm

from tasks.jobtypes import JobContext, job_type

log = logging.getLogger(__name__)


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


@job_type(title="Every field", on_worker_lost="restart")
def every_field(
    ctx: JobContext,
    count: Annotated[int, Field(ge=2, le=9, description="A whole number from 2 to 9")],
    ratio: Annotated[float, Field(gt=0, le=1.5)] = 0.5,
    label: Annotated[str, Field(min_length=2, max_length=12, pattern=r"^[a-z]+$")] = "abc",
    loud: bool = False,
    mode: Literal["fast", "slow"] = "fast",
    colour: Colour = Colour.GREEN,
    limit: int | None = None,
) -> dict[str, object]:
    """Takes one parameter of each kind a form can show, and returns what it was given."""
    return {
        "count": count,
        "ratio": ratio,
        "label": label,
        "loud": loud,
        "mode": mode,
        "colour": colour.value,
        "limit": limit,
    }


@job_type(on_worker_lost="restart")
def tqdm_only(ctx: JobContext, items: Annotated[int, Field(ge=1, le=100_000)] = 50, pause_ms: float = 20) -> int:
    """Loops over a plain tqdm bar and never calls ctx: its progress comes from the bar."""
    total = 0
    for item in tqdm(range(items), desc="Crunching"):
        total += item
        time.sleep(pause_ms / 1000)
    return total


@job_type(on_worker_lost="restart")
def progress_then_fail(ctx: JobContext, fail_at: Annotated[int, Field(ge=1)] = 3) -> None:
    """Reports progress with ctx.progress, then raises."""
    for done in range(fail_at):
        ctx.progress(done, 10, f"working on item {done + 1}")
    raise ValueError(f"item {fail_at} is broken")


@job_type(on_worker_lost="restart")
def silent(ctx: JobContext, seconds: Annotated[float, Field(ge=0, le=60)] = 3) -> str:
    """Works without reporting anything at all."""
    time.sleep(seconds)
    return "done"


def wait_reporting(ctx: JobContext, seconds: float) -> None:
    """Wait, reporting the whole seconds gone by as progress."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ctx.progress(int(seconds - left), int(seconds))
        time.sleep(0.01)


@job_type(on_worker_lost="restart")
def slow_restart(ctx: JobContext, seconds: Annotated[float, Field(ge=0, le=600)] = 60) -> None:
    """Not resumable: run again from the start if its worker dies."""
    wait_reporting(ctx, seconds)


@job_type(on_worker_lost="fail")
def slow_fail(ctx: JobContext, seconds: Annotated[float, Field(ge=0, le=600)] = 60) -> None:
    """Not resumable: fails with "worker lost" if its worker dies."""
    wait_reporting(ctx, seconds)


@job_type(on_worker_lost="resume")
def steps_then_fail(ctx: JobContext, n: int = 50, fail_at: int = 20) -> None:
    """Steps, until the step `fail_at` raises."""
    for step in ctx.steps(n):
        if step == fail_at:
            raise ValueError(f"step {fail_at} broke")


@job_type(on_worker_lost="restart")
def chatty(ctx: JobContext, lines: Annotated[int, Field(ge=0, le=1_000_000)] = 3, pause_ms: float = 0) -> int:
    """Says something every way a job can: ctx.log, logging, print, standard error; draws a tqdm
    bar (not a line); then prints `lines` numbered lines, `pause_ms` apart, and a last one without
    a line end."""
    ctx.log("from ctx.log")
    ctx.log("from ctx.log, a warning", level="warning")
    log.info("from logging")
    log.debug("from logging, below the worker's level")
    print("from print")
    print("from standard error", file=sys.stderr)
    for _ in tqdm(range(3), desc="a bar"):
        pass
    try:
        raise KeyError("caught")
    except KeyError:
        log.exception("from logging, with a traceback")
    for line in range(1, lines + 1):
        print(f"line {line} of {lines}")
        if pause_ms:
            time.sleep(pause_ms / 1000)
    print("the end, without a line end", end="")
    return lines


@job_type(on_worker_lost="restart")
def records(ctx: JobContext, rows: Annotated[int, Field(ge=0, le=1000)] = 3) -> list[dict[str, object]]:
    """Returns `rows` flat records, the second with a column of its own: a table on the page."""
    return [
        {"id": i, "name": f"item {i}", "even": i % 2 == 0, "ratio": i / 4, **({"note": None} if i == 1 else {})}
        for i in range(rows)
    ]


@job_type(on_worker_lost="restart")
def nested(ctx: JobContext, label: str = "run", seconds: Annotated[float, Field(ge=0, le=60)] = 0) -> dict[str, object]:
    """Returns a nested dict (formatted JSON on the page), after `seconds` of reported progress."""
    wait_reporting(ctx, seconds)
    return {"label": label, "stats": {"count": 3, "values": [1, 2.5, None]}, "ok": True, "quote": 'a "b" <c> é'}
