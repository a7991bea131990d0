"""Count the primes up to a limit with a segmented sieve, a segment per step: CPU-bound and resumable."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from tasks.jobtypes import JobContext, job_type


def base_primes(limit: int) -> list[int]:
    """The primes up to `limit`, by a plain sieve of Eratosthenes."""
    sieve = bytearray([1]) * (limit + 1)
    sieve[: min(2, limit + 1)] = b"\0" * min(2, limit + 1)
    for p in range(2, math.isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return [i for i, is_prime in enumerate(sieve) if is_prime]


def primes_between(low: int, high: int, small: list[int]) -> int:
    """How many primes p satisfy low <= p < high, given every prime up to sqrt(high)."""
    low = max(low, 2)
    if high <= low:
        return 0
    segment = bytearray([1]) * (high - low)
    for p in small:
        if p * p >= high:
            break
        start = max(p * p, (low + p - 1) // p * p)
        segment[start - low :: p] = bytes(len(range(start, high, p)))
    return segment.count(1)


@job_type(title="Count primes", on_worker_lost="resume", total=lambda params: params["segments"])
def primes(
    ctx: JobContext,
    limit: Annotated[int, Field(ge=2, le=2_000_000_000, description="Count the primes up to this number")] = 10_000_000,
    segments: Annotated[int, Field(ge=1, le=10_000, description="Steps to split the range into")] = 100,
) -> dict[str, int]:
    """Count the primes up to a limit, one segment of the range per step; a resumed job goes on
    from the last segment it logged, with the count so far kept in its checkpoint."""
    small = base_primes(math.isqrt(limit))
    width = -(-(limit + 1) // segments)
    for step in ctx.steps(segments):
        low, high = (step - 1) * width, min(step * width, limit + 1)
        here = primes_between(low, high, small)
        found = ctx.checkpoint["found"] = ctx.checkpoint.get("found", 0) + here
        ctx.log(f"segment {step}: {here:,} primes from {low:,} to {high - 1:,}")
        ctx.progress(message=f"{found:,} primes below {high:,}")
    return {"limit": limit, "primes": ctx.checkpoint.get("found", 0)}
