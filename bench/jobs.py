"""Job types only the bench runs (JOB_MODULES in the bench environment)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tasks.jobtypes import JobContext, job_type


@job_type(on_worker_lost="restart")
def shout(ctx: JobContext, lines: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000) -> int:
    """Prints `lines` lines as fast as it can: what a chatty job costs the log and the page."""
    for line in range(1, lines + 1):
        print(shout_line(line, lines))
    return lines


def shout_line(line: int, lines: int) -> str:
    return f"line {line} of {lines}: the quick brown fox jumps over the lazy dog"
