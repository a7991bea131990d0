"""Job types as pure logic: what `@job_type` accepts and refuses, the params model built from a
signature, the built-in types' own functions, and results."""

from __future__ import annotations

import enum
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from settings import PROJECT_ROOT, Settings
from tasks import jobtypes
from tasks.catalog.primes import base_primes, primes_between
from tasks.jobtypes import CatalogError, InvalidParams, JobContext, JobType, SettingLimit, job_type, load_catalog
from tasks.worker.runner import encode_result


def registered(function: Any, **options: Any) -> JobType:
    """Register `function` under a name of its own, and build its model."""
    job_type(**options)(function)
    return jobtypes._registry.pop(options.get("name") or function.__name__)


def built(job: JobType, settings: Settings) -> JobType:
    job.build(settings)
    return job


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


def test_a_signature_becomes_a_params_model_with_its_bounds_defaults_and_descriptions(settings: Settings) -> None:
    def sample(
        ctx: JobContext,
        n: Annotated[int, Field(ge=1, description="How many"), SettingLimit("max_n")],
        name: Annotated[str, Field(max_length=5, pattern=r"^[a-z]+$")] = "abc",
        flag: bool = True,
        size: Size = Size.SMALL,
        mode: Literal["a", "b"] = "a",
        limit: float | None = None,
    ) -> None:
        """Sample job.

        More words that are not the description."""

    job = built(registered(sample, name="sample_types"), settings)
    assert (job.title, job.description, job.on_worker_lost, job.resumable) == (
        "Sample types",
        "Sample job.",
        "fail",
        False,
    )
    schema = job.schema()
    assert schema["required"] == ["n"]
    assert schema["additionalProperties"] is False
    n = schema["properties"]["n"]
    assert (n["minimum"], n["maximum"], n["description"]) == (1, settings.max_n, "How many")
    assert job.json_params({"n": "5"}) == {"n": 5, "name": "abc", "flag": True, "size": 1, "mode": "a", "limit": None}
    values = job.validate({"n": 5, "size": 2})
    assert values.size is Size.LARGE  # type: ignore[attr-defined]
    small = built(job, replace(settings, max_n=10))
    with pytest.raises(InvalidParams) as refused:
        small.json_params({"n": 11, "name": "ABC", "flag": "maybe", "size": 3, "mode": "c", "limit": True, "x": 1})
    assert set(refused.value.errors) == {"n", "name", "flag", "size", "mode", "limit", "x"}
    assert (
        refused.value.errors["x"]
        == "unknown parameter; the parameters of sample_types are: n, name, flag, size, mode, limit"
    )
    assert refused.value.errors["limit"] == "must be a number, not true or false"
    for not_json in (float("nan"), float("inf"), "-Infinity"):
        with pytest.raises(InvalidParams, match=r"^limit: Input should be a finite number"):
            job.json_params({"n": 1, "limit": not_json})


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (lambda: lambda: None, "first parameter must be the job's context"),
        (lambda: lambda ctx, *args: None, r"no \*args"),
        (lambda: lambda ctx, n: None, "needs a type hint"),
    ],
)
def test_signatures_a_form_cannot_show_are_refused_when_registered(define: Any, message: str) -> None:
    function = define()
    function.__name__ = "bad_signature"
    with pytest.raises(CatalogError, match=message):
        job_type()(function)


def test_unsupported_types_and_names_are_refused_when_registered() -> None:
    def listy(ctx: JobContext, items: list[int]) -> None: ...

    def model(ctx: JobContext, data: BaseModel) -> None: ...

    for function in (listy, model):
        with pytest.raises(CatalogError, match="is not supported; use int, float, str, bool, Literal"):
            job_type()(function)

    async def later(ctx: JobContext) -> None: ...

    def lazy(ctx: JobContext) -> Iterator[int]:
        yield 1

    for odd in (later, lazy):
        with pytest.raises(CatalogError, match="must be a plain function"):
            job_type()(odd)
    with pytest.raises(CatalogError, match="use lower case letters"):
        job_type("Bad Name")(listy)
    with pytest.raises(CatalogError, match="on_worker_lost must be one of"):
        job_type("fine", on_worker_lost="maybe")(listy)  # type: ignore[arg-type]


def test_a_type_defined_twice_in_two_modules_is_refused(settings: Settings) -> None:
    load_catalog(settings)

    def count(ctx: JobContext) -> None: ...

    with pytest.raises(CatalogError, match=r"job type count is defined twice: in tasks\.catalog\.count and in tests"):
        job_type()(count)


def test_the_catalog_has_the_built_in_types_and_the_test_modules_own(settings: Settings) -> None:
    catalog = load_catalog(settings)
    assert {"count", "primes", "text_stats"} <= set(catalog)
    assert "tqdm_only" in catalog  # from tests/catalog.py, named in JOB_MODULES
    assert [catalog[name].on_worker_lost for name in ("count", "primes", "text_stats")] == [
        "resume",
        "resume",
        "restart",
    ]
    with pytest.raises(CatalogError, match=r"cannot import job module no_such\.module"):
        load_catalog(replace(settings, job_modules=("no_such.module",)))


@pytest.mark.parametrize("limit", [2, 3, 10, 97, 1000, 100_003])
@pytest.mark.parametrize("segments", [1, 3, 7])
def test_the_segmented_sieve_counts_what_a_plain_sieve_counts(limit: int, segments: int) -> None:
    small = base_primes(math.isqrt(limit))
    width = -(-(limit + 1) // segments)
    found = sum(primes_between(low, min(low + width, limit + 1), small) for low in range(0, limit + 1, width))
    assert found == len(base_primes(limit))


class Point(BaseModel):
    x: int
    y: int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (3, 3),
        ("s", "s"),
        ({"a": [1, 2]}, {"a": [1, 2]}),
        ((1, 2), [1, 2]),
        (Point(x=1, y=2), {"x": 1, "y": 2}),
    ],
)
def test_results_are_kept_as_json(value: object, expected: object) -> None:
    assert encode_result(value, 1000) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [({1, 2}, "not JSON"), (object(), "not JSON"), (float("nan"), "not JSON"), ("x" * 2000, "at most 1,000 are kept")],
)
def test_results_that_are_not_json_or_too_large_are_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_result(value, 1000)


@pytest.mark.parametrize("entry_point", ["tasks.worker.celery_app", "rxapp.rxapp"])
def test_the_worker_and_the_app_refuse_to_start_with_a_job_module_they_cannot_import(entry_point: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {entry_point}"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "JOB_MODULES": "no_such.module"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "cannot import job module no_such.module (JOB_MODULES): No module named 'no_such'" in result.stderr
