"""One param of the job form, drawn from its FieldSpec: a label around its control, help text,
and the reason the last submit refused its value.

Hooks: the control is `param-<name>` (named `<name>` in the form data), its error
`param-error-<name>`, and the label `job-<name>-input` (Playwright's fill() on a label fills its
control: the count form's `job-n-input` hook).
"""

import reflex as rx
from reflex.vars.object import ObjectVar

from rxapp.forms import FieldSpec

# A native select, drawn like the Radix text fields around it.
SELECT_STYLE = {
    "height": "var(--space-6)",
    "padding": "0 var(--space-2)",
    "border": "none",
    "border_radius": "var(--radius-2)",
    "box_shadow": "inset 0 0 0 1px var(--gray-a7)",
    "background_color": "var(--color-surface)",
    "color": "var(--gray-12)",
    "font_family": "inherit",
    "font_size": "var(--font-size-2)",
    "width": "100%",
}


def _control_props(field: ObjectVar[FieldSpec], **limits: rx.Var) -> dict:
    """What every control has: its name, its hook, what describes it, and `limits`: HTML
    attributes (by their React names) that a field may lack; React leaves out a null one."""
    return {
        "name": field.name,
        "id": "field-" + field.name,
        "aria_describedby": "field-" + field.name + "-help field-" + field.name + "-error",
        "aria_invalid": field.error != "",
        "custom_attrs": {"data-testid": "param-" + field.name, **limits},
    }


def _input(field: ObjectVar[FieldSpec], kind: str, **limits: rx.Var) -> rx.Component:
    return rx.input(
        type=kind,
        default_value=field.default,
        required=field.required,
        auto_complete="off",
        size="2",
        width="100%",
        **_control_props(field, **limits),
    )


def _number(field: ObjectVar[FieldSpec]) -> rx.Component:
    return _input(field, "number", min=field.min, max=field.max, step=field.step)


def _text(field: ObjectVar[FieldSpec]) -> rx.Component:
    return _input(field, "text", minLength=field.min_length, maxLength=field.max_length, pattern=field.pattern)


def _textarea(field: ObjectVar[FieldSpec]) -> rx.Component:
    return rx.text_area(
        default_value=field.default,
        required=field.required,
        rows="4",
        resize="vertical",
        size="2",
        width="100%",
        **_control_props(field, minLength=field.min_length, maxLength=field.max_length),
    )


def _select(field: ObjectVar[FieldSpec]) -> rx.Component:
    return rx.el.select(
        rx.cond(field.optional, rx.el.option("—", value="")),
        rx.foreach(field.options, lambda option: rx.el.option(option, value=option)),
        default_value=field.default,
        required=field.required,
        style=SELECT_STYLE,
        **_control_props(field),
    )


def _labelled(field: ObjectVar[FieldSpec], control: rx.Component) -> rx.Component:
    return rx.el.label(
        rx.text(field.title, as_="span", size="2", weight="medium"),
        control,
        display="flex",
        flex_direction="column",
        gap="var(--space-1)",
        width="100%",
        custom_attrs={"data-testid": "job-" + field.name + "-input"},
    )


def _checkbox(field: ObjectVar[FieldSpec]) -> rx.Component:
    return rx.checkbox(field.title, default_checked=field.checked, **_control_props(field))


def param_field(field: ObjectVar[FieldSpec]) -> rx.Component:
    return rx.vstack(
        rx.match(
            field.kind,
            ("checkbox", _checkbox(field)),
            ("select", _labelled(field, _select(field))),
            ("textarea", _labelled(field, _textarea(field))),
            ("number", _labelled(field, _number(field))),
            _labelled(field, _text(field)),
        ),
        rx.cond(
            field.description != "",
            rx.text(field.description, id="field-" + field.name + "-help", size="1", color_scheme="gray"),
        ),
        rx.cond(
            field.error != "",
            rx.text(
                field.error,
                id="field-" + field.name + "-error",
                size="1",
                color_scheme="red",
                role="alert",
                custom_attrs={"data-testid": "param-error-" + field.name},
            ),
        ),
        spacing="1",
        width="100%",
    )
