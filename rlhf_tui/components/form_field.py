"""One preset key as a form row: its name, an editing widget picked from the schema field's type,
help (description, range, default) and room for its errors.

Widgets by type: `Switch` for bool, `Select` for Literal choices, `Input` (integer, number or text)
for numbers and strings, and an `Input` taking a TOML value for anything else (lists) — and for a
value read from a file that the typed widget cannot show (`zero_stage = "three"`), so the bad value
stays visible and fixable. The row holds no rules: the screen validates the whole preset and hands
each row its errors (`set_errors`).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic.fields import FieldInfo
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from rlhf_train.config.issues import toml_value
from rlhf_train.config.loader import parse_override_value
from rlhf_train.config.writer import field_choices, field_range

Kind = Literal["bool", "choice", "int", "float", "text", "toml"]


def field_kind(info: FieldInfo) -> Kind:
    """The widget kind for a schema field, from its type alone."""
    if field_choices(info):
        return "choice"
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(info.annotation, "toml")


def fits(info: FieldInfo, kind: Kind, value: object) -> bool:
    """Whether a widget of `kind` can show `value` exactly (else the row falls back to TOML text);
    a choice must match in type too (`true` is not the choice `1`)."""
    if kind == "choice":
        return any(type(c) is type(value) and c == value for c in field_choices(info) or ())
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return type(value) is int
    if kind == "float":
        return type(value) in (int, float) and math.isfinite(value)
    if kind == "text":
        return isinstance(value, str)
    return True


def help_text(info: FieldInfo) -> str:
    """The field's description, range and default, as shown under it."""
    extra = [bounds] if (bounds := field_range(info)) else []
    extra.append(f"default {toml_value(info.get_default(call_default_factory=True))}")
    return f"{info.description} ({'; '.join(extra)})"


class FormField(Vertical):
    """The row for `[section].key`, showing `value` at first; `value` is what the user has entered."""

    class Changed(Message):
        """The user changed the field's value."""

        def __init__(self, field: FormField) -> None:
            super().__init__()
            self.field = field

    def __init__(self, section: str, key: str, info: FieldInfo, value: object) -> None:
        super().__init__(id=f"field-{section}-{key}", classes="form-field")
        self.section = section
        self.key = key
        self.info = info
        kind = field_kind(info)
        self.kind: Kind = kind if fits(info, kind, value) else "toml"
        self.initial = value
        self._reported: tuple[type, object] = (type(value), value)
        self._errors: list[str] = []

    @property
    def widget_id(self) -> str:
        return f"input-{self.section}-{self.key}"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(self.key, classes="field-name")
            yield self._make_widget()
        yield Static(help_text(self.info), classes="field-help", markup=False)
        yield Static("", classes="field-error", markup=False)

    def _make_widget(self) -> Widget:
        value, wid, classes = self.initial, self.widget_id, "field-widget"
        if self.kind == "bool":
            return Switch(bool(value), animate=False, id=wid, classes=classes)
        if self.kind == "choice":
            options = [(str(c), c) for c in field_choices(self.info) or ()]
            return Select(options, value=value, allow_blank=False, compact=True, id=wid, classes=classes)
        # validate_on=[]: the screen's whole-preset validation is the one judge of a value
        if self.kind in ("int", "float"):
            return Input(repr(value), type="integer" if self.kind == "int" else "number", compact=True, id=wid,
                         classes=classes, select_on_focus=False, validate_on=[])
        text = value if self.kind == "text" else toml_value(value)
        placeholder = "" if self.kind == "text" else "a TOML value"
        return Input(str(text), placeholder=placeholder, compact=True, id=wid, classes=classes,
                     select_on_focus=False, validate_on=[])

    @property
    def value(self) -> object:
        """The entered value, typed for the key; text that does not parse as the key's type is
        returned as the text, for validation to reject with its own message."""
        widget = self.query_one(f"#{self.widget_id}")
        if isinstance(widget, (Switch, Select)):
            return widget.value
        assert isinstance(widget, Input)
        text = widget.value
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            return text
        return text if self.kind == "text" else parse_override_value(text.strip())

    def set_errors(self, messages: list[str]) -> None:
        """Show `messages` under the field and mark it invalid (none: clear both)."""
        if messages == self._errors:
            return
        self._errors = messages
        self.set_class(bool(messages), "-invalid")
        error = self.query_one(".field-error", Static)
        error.update("\n".join(f"✗ {m}" for m in messages))
        error.display = bool(messages)

    @on(Input.Changed)
    @on(Switch.Changed)
    @on(Select.Changed)
    def _changed(self, event: Message) -> None:
        """Report a change of the value (not of its spelling, nor a widget settling in on mount)."""
        event.stop()
        value = self.value
        if (type(value), value) != self._reported:
            self._reported = (type(value), value)
            self.post_message(self.Changed(self))

