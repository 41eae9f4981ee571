"""Write presets as TOML: commented (help, range, default) for `rlhf-train new`, plain for the
resolved `preset.toml` of a run directory. `load(write(p)) == p` for every preset.
"""

from __future__ import annotations

from typing import Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rlhf_train.config.issues import toml_value
from rlhf_train.config.schema import SCHEMA_VERSION, SECTIONS, Preset


def field_range(info: FieldInfo) -> str:
    """`1 ≤ x ≤ 64`-style bounds of a field, from its pydantic constraints ("" when unbounded)."""
    low = high = ""
    for meta in info.metadata:
        for attr, sign in (("ge", "≤"), ("gt", "<")):
            if getattr(meta, attr, None) is not None:
                low = f"{getattr(meta, attr)} {sign} "
        for attr, sign in (("le", "≤"), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                high = f" {sign} {getattr(meta, attr)}"
    return f"{low}x{high}" if low or high else ""


def field_choices(info: FieldInfo) -> tuple | None:
    """The allowed values of a Literal field, else None."""
    return get_args(info.annotation) if get_origin(info.annotation) is Literal else None


def _comment_for(info: FieldInfo) -> str:
    extra = []
    choices = field_choices(info)
    if choices:
        extra.append("one of " + ", ".join(toml_value(c) for c in choices))
    bounds = field_range(info)
    if bounds:
        extra.append(bounds)
    default = info.get_default(call_default_factory=True)
    extra.append(f"default {toml_value(default)}")
    return f"# {info.description} ({'; '.join(extra)})"


def _section_lines(name: str, section: BaseModel, commented: bool) -> list[str]:
    lines = [f"[{name}]"]
    for key, info in type(section).model_fields.items():
        if commented:
            lines.append(_comment_for(info))
        lines.append(f"{key} = {toml_value(getattr(section, key))}")
    return lines


def preset_to_toml(preset: Preset, commented: bool = False, title: str = "") -> str:
    """The whole preset as TOML text; `commented` adds help, range and default above every key."""
    lines = []
    if title:
        lines += [f"# {title}", ""]
    lines.append(f"schema_version = {SCHEMA_VERSION}")
    for name in SECTIONS:
        lines.append("")
        lines += _section_lines(name, getattr(preset, name), commented)
    return "\n".join(lines) + "\n"
