"""What is wrong with a preset, said so that a user can fix it without reading code."""

from __future__ import annotations

import json
from dataclasses import dataclass


def toml_value(value: object) -> str:
    """A value as it would be written in TOML (strings quoted, booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # JSON escapes the C0 controls; TOML also forbids a raw DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def key_name(section: str, key: str = "") -> str:
    """`[section].key` — how every message names a place in a preset."""
    return f"[{section}].{key}" if key else f"[{section}]"


_UNSET = object()


@dataclass(frozen=True)
class PresetIssue:
    """One error or warning about a preset.

    `key` is `[section].key` (or `[section]` / `preset` for whole-file problems), `value` the
    offending value as given, `rule` what must hold, `fix` what to change.
    """

    key: str
    rule: str
    fix: str = ""
    value: object = _UNSET

    def render(self) -> str:
        where = self.key if self.value is _UNSET else f"{self.key} = {toml_value(self.value)}"
        text = f"{where}: {self.rule}"
        return f"{text} Fix: {self.fix}" if self.fix else text

    def as_json(self) -> dict:
        out: dict[str, object] = {"key": self.key, "rule": self.rule, "fix": self.fix}
        if self.value is not _UNSET:
            out["value"] = self.value
        out["message"] = self.render()
        return out


class PresetInvalid(ValueError):
    """Raised by `load_preset` when a preset has errors; carries all of them, not only the first."""

    def __init__(self, errors: list[PresetIssue], warnings: list[PresetIssue] | None = None):
        self.errors = errors
        self.warnings = warnings or []
        super().__init__("\n".join(e.render() for e in errors))
