"""The seed's job and the default type: count from 1 to n, a step at a time."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from settings import get_settings
from tasks.jobtypes import JobContext, SettingLimit, job_type

Steps = Annotated[
    int, Field(ge=1, title="Number of steps", description="How many steps to count"), SettingLimit("max_n")
]


@job_type(title="Count", on_worker_lost="resume", total=lambda params: params["n"])
def count(ctx: JobContext, n: Steps) -> None:
    """Count from 1 to n, one step at a time."""
    delay_s = get_settings().step_delay_ms / 1000
    if delay_s <= 0:
        for _ in ctx.steps(n):
            pass
    else:
        for _ in ctx.steps(n):
            time.sleep(delay_s)
