"""The job form, without Reflex: a job type's params schema as form fields, and the values a
submitted HTML form holds as the params the type's model takes.

The model (tasks.jobtypes) remains the one check of the params: the fields' HTML attributes only
spare a round trip, and values that are not what a field expects are handed on as they came, for
the model to name what is wrong with them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

# A text longer than this gets a text area rather than a one-line input.
TEXTAREA_FROM_CHARS = 200
INT_RE = re.compile(r"[+-]?\d+")
DECIMAL_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclasses.dataclass
class FieldSpec:
    """One param as the form shows it. Attributes that do not apply are None, so that the page
    leaves them out (an empty `pattern` would allow only the empty text)."""

    name: str = ""
    title: str = ""
    # "number", "text", "textarea", "checkbox" or "select"
    kind: str = "text"
    # The JSON schema type of the value: integer, number, string, boolean; "" when mixed.
    type: str = ""
    description: str = ""
    required: bool = False
    # May be left empty: the model's default (None) applies.
    optional: bool = False
    default: str = ""
    checked: bool = False
    min: str | None = None
    max: str | None = None
    step: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    options: list[str] = dataclasses.field(default_factory=list)
    # Why the last submit refused this field's value.
    error: str = ""


def field_specs(schema: Mapping[str, Any]) -> list[FieldSpec]:
    """The form fields of a params schema (pydantic's JSON schema of a job type), in its order."""
    defs = schema.get("$defs", {})
    return [_field(name, prop, defs) for name, prop in schema.get("properties", {}).items()]


def _resolved(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The property with its `$ref` merged in and `X | None` unwrapped, and whether None is allowed."""
    merged = dict(prop)
    optional = False
    members = merged.pop("anyOf", None)
    if members is not None:
        kept = [member for member in members if member.get("type") != "null"]
        optional = len(kept) < len(members)
        if len(kept) == 1:
            merged = {**kept[0], **merged}
    ref = merged.pop("$ref", None)
    if isinstance(ref, str):
        merged = {**defs.get(ref.rsplit("/", 1)[-1], {}), **merged}
    return merged, optional


def _number_text(value: object) -> str:
    """A number as an HTML attribute holds it: 10000000, not 1e+07; 0.5."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _bound(prop: Mapping[str, Any], inclusive: str, exclusive: str, nudge: int) -> str | None:
    """An HTML min or max. HTML has no exclusive bound: a whole number's moves one step inside,
    a decimal one's stays (the browser lets the bound itself through, the model does not)."""
    if inclusive in prop:
        return _number_text(prop[inclusive])
    if exclusive in prop:
        return _number_text(prop[exclusive] + nudge)
    return None


def _field(name: str, prop: Mapping[str, Any], defs: Mapping[str, Any]) -> FieldSpec:
    resolved, optional = _resolved(prop, defs)
    json_type = resolved.get("type")
    json_type = json_type if isinstance(json_type, str) else ""
    default = resolved.get("default")
    spec = FieldSpec(
        name=name,
        title=str(resolved.get("title") or name),
        type=json_type,
        description=str(resolved.get("description") or ""),
        optional=optional,
        default="" if default is None or isinstance(default, bool) else _number_text(default),
    )
    if "enum" in resolved:
        spec.kind = "select"
        spec.options = [str(value) for value in resolved["enum"]]
        spec.required = not optional
    elif json_type == "boolean":
        spec.kind, spec.checked = "checkbox", default is True
    elif json_type in ("integer", "number"):
        spec.kind, spec.required = "number", not optional
        integer = json_type == "integer"
        spec.step = "1" if integer else "any"
        spec.min = _bound(resolved, "minimum", "exclusiveMinimum", 1 if integer else 0)
        spec.max = _bound(resolved, "maximum", "exclusiveMaximum", -1 if integer else 0)
    else:
        spec.min_length, spec.max_length = resolved.get("minLength"), resolved.get("maxLength")
        spec.pattern = resolved.get("pattern")
        spec.kind = "textarea" if (spec.max_length or 0) > TEXTAREA_FROM_CHARS else "text"
        # An empty text is a value (unless the model asks for at least one character).
        spec.required = not optional and (spec.min_length or 0) > 0
    return spec


def _number(text: str, integer: bool) -> int | float | str:
    """A number typed in the form; a text that is no number goes on unchanged (the model refuses it)."""
    if INT_RE.fullmatch(text):
        return int(text)
    if DECIMAL_RE.fullmatch(text):
        value = float(text)
        return int(value) if integer and value.is_integer() else value
    return text


def form_params(fields: list[FieldSpec], form: Mapping[str, Any]) -> dict[str, Any]:
    """The params a submitted form holds: numbers as numbers, an unchecked checkbox (absent from
    the form) as false, an empty optional field left out so that its default applies.

    Only the fields' names are read. A value that is not a string (a client other than the page
    may send anything) is handed on unchanged.
    """
    params: dict[str, Any] = {}
    for spec in fields:
        raw = form.get(spec.name)
        if spec.kind == "checkbox" and raw in (None, "on"):
            params[spec.name] = raw == "on"  # a checked box sends "on", an unchecked one nothing
            continue
        if raw is None:
            continue  # missing: the model says whether it is required
        if not isinstance(raw, str):
            params[spec.name] = raw
            continue
        text = raw.strip() if spec.kind in ("number", "select") else raw
        if not text and (spec.optional or spec.kind == "number"):
            continue  # nothing typed: the default applies, or the model says it is required
        if spec.kind == "number":
            params[spec.name] = _number(text, spec.type == "integer")
        elif spec.kind == "select" and spec.type in ("integer", "") and INT_RE.fullmatch(text):
            params[spec.name] = int(text)
        else:
            params[spec.name] = text
    return params


def with_errors(fields: list[FieldSpec], errors: Mapping[str, str]) -> tuple[list[FieldSpec], str]:
    """The fields with a refusal's reasons (InvalidParams.errors) next to the ones they concern,
    and a message of the others (about the params as a whole), "" when there are none."""
    names = {spec.name for spec in fields}
    general = "; ".join(
        reason if name == "params" else f"{name}: {reason}" for name, reason in errors.items() if name not in names
    )
    return [dataclasses.replace(spec, error=errors.get(spec.name, "")) for spec in fields], general
