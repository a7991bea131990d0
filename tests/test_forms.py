"""The job form without a browser: schemas as fields, form values as params, refusals placed next
to their fields."""

from __future__ import annotations

from typing import Any

import pytest

from rxapp.forms import FieldSpec, field_specs, form_params, with_errors
from settings import Settings
from tasks.clients import Clients
from tasks.jobtypes import InvalidParams, JobType


@pytest.fixture(scope="module")
def catalog(settings: Settings) -> dict[str, JobType]:
    return Clients(settings).catalog


def fields(catalog: dict[str, JobType], job_type: str) -> dict[str, FieldSpec]:
    return {spec.name: spec for spec in field_specs(catalog[job_type].schema())}


def test_every_kind_of_param_has_its_field(catalog: dict[str, JobType]) -> None:
    specs = fields(catalog, "every_field")
    assert list(specs) == ["count", "ratio", "label", "loud", "mode", "colour", "limit"]
    count, ratio, label = specs["count"], specs["ratio"], specs["label"]
    assert (count.kind, count.min, count.max, count.step, count.required) == ("number", "2", "9", "1", True)
    assert (count.default, count.description) == ("", "A whole number from 2 to 9")
    # HTML has no exclusive bound: a decimal one stays as it is (the model refuses 0 itself).
    assert (ratio.kind, ratio.min, ratio.max, ratio.step, ratio.default) == ("number", "0", "1.5", "any", "0.5")
    assert (label.kind, label.min_length, label.max_length, label.pattern) == ("text", 2, 12, "^[a-z]+$")
    assert (label.default, label.required) == ("abc", True)
    assert (specs["loud"].kind, specs["loud"].checked, specs["loud"].required) == ("checkbox", False, False)
    assert (specs["mode"].kind, specs["mode"].options, specs["mode"].default) == ("select", ["fast", "slow"], "fast")
    # An Enum comes through `$ref`: its values, and its title from its definition.
    colour = specs["colour"]
    assert (colour.kind, colour.options, colour.default, colour.title) == (
        "select",
        ["red", "green", "blue"],
        "green",
        "Colour",
    )
    limit = specs["limit"]
    assert (limit.kind, limit.type, limit.optional, limit.required, limit.default) == (
        "number",
        "integer",
        True,
        False,
        "",
    )
    assert (limit.min, limit.pattern) == (None, None)


def test_the_built_in_types_fields(catalog: dict[str, JobType], settings: Settings) -> None:
    n = fields(catalog, "count")["n"]
    assert (n.title, n.min, n.max, n.required) == ("Number of steps", "1", str(settings.max_n), True)
    assert fields(catalog, "primes")["limit"].default == "10000000"
    text_stats = fields(catalog, "text_stats")
    # A long text gets a text area; an empty one is refused by its minimum length.
    assert (text_stats["text"].kind, text_stats["text"].max_length, text_stats["text"].required) == (
        "textarea",
        3000,
        True,
    )
    assert text_stats["case"].options == ["ignore", "keep"]


def test_exclusive_integer_bounds_move_one_step_inside() -> None:
    schema = {"properties": {"k": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}}}
    (spec,) = field_specs(schema)
    assert (spec.min, spec.max) == ("1", "9")


def test_optional_choices_and_integer_choices() -> None:
    schema = {
        "$defs": {"Level": {"enum": [1, 2, 3], "type": "integer", "title": "Level"}},
        "properties": {"level": {"anyOf": [{"$ref": "#/$defs/Level"}, {"type": "null"}], "default": None}},
    }
    (spec,) = field_specs(schema)
    assert (spec.kind, spec.options, spec.optional, spec.required, spec.default) == (
        "select",
        ["1", "2", "3"],
        True,
        False,
        "",
    )
    assert form_params([spec], {"level": "2"}) == {"level": 2}
    assert form_params([spec], {"level": ""}) == {}


def test_a_form_as_the_model_takes_it(catalog: dict[str, JobType]) -> None:
    job = catalog["every_field"]
    specs = list(fields(catalog, "every_field").values())
    # As a browser sends it: every value a string, the unchecked box absent, the optional one empty.
    form = {"count": "3", "ratio": "1.25", "label": "xyz", "mode": "slow", "colour": "blue", "limit": ""}
    params = form_params(specs, form)
    assert params == {"count": 3, "ratio": 1.25, "label": "xyz", "loud": False, "mode": "slow", "colour": "blue"}
    assert job.json_params(params) == {**params, "limit": None}
    checked = form_params(specs, {**form, "loud": "on", "limit": " 7 "})
    assert (checked["loud"], checked["limit"]) == (True, 7)
    # A whole number written as a decimal one is still a whole number.
    assert form_params(specs, {**form, "count": "4.0"})["count"] == 4


@pytest.mark.parametrize(
    ("form", "refused"),
    [
        ({"count": "1"}, "count"),
        ({"count": "1.5"}, "count"),
        ({"count": "abc"}, "count"),
        ({"count": ""}, "count"),  # required: left out, and the model says so
        ({"count": "3", "ratio": "0"}, "ratio"),
        ({"count": "3", "label": "ABC"}, "label"),
        ({"count": "3", "mode": "medium"}, "mode"),
        ({"count": "3", "colour": "purple"}, "colour"),
        ({"count": "3", "loud": "maybe"}, "loud"),
        ({"count": ["3"]}, "count"),  # not a string: handed on as it came
    ],
)
def test_what_the_model_refuses_is_named_by_field(
    form: dict[str, Any], refused: str, catalog: dict[str, JobType]
) -> None:
    specs = list(fields(catalog, "every_field").values())
    with pytest.raises(InvalidParams) as caught:
        catalog["every_field"].validate(form_params(specs, form))
    shown, general = with_errors(specs, caught.value.errors)
    assert [spec.name for spec in shown if spec.error] == [refused]
    assert general == ""


def test_refusals_about_no_field_make_one_message(catalog: dict[str, JobType]) -> None:
    specs = list(fields(catalog, "count").values())
    shown, general = with_errors(specs, {"n": "required", "params": "may be at most 10 bytes", "x": "unknown"})
    assert [spec.error for spec in shown] == ["required"]
    assert general == "may be at most 10 bytes; x: unknown"
    assert specs[0].error == ""  # the form's own fields are not changed


def test_only_the_types_fields_are_read(catalog: dict[str, JobType]) -> None:
    specs = list(fields(catalog, "count").values())
    assert form_params(specs, {"n": "12", "job_type": "primes", "extra": "1"}) == {"n": 12}
