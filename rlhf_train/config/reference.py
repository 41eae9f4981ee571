"""The preset reference (Markdown) generated from the schema; the README embeds it verbatim."""

from __future__ import annotations

from rlhf_train.config.issues import toml_value
from rlhf_train.config.schema import SECTIONS
from rlhf_train.config.writer import field_choices, field_range


def _type_name(info) -> str:
    choices = field_choices(info)
    if choices:
        return " \\| ".join(toml_value(c) for c in choices)
    name = getattr(info.annotation, "__name__", str(info.annotation))
    return {"list": "string or list of strings", "str": "string", "int": "integer", "float": "number",
            "bool": "boolean"}.get(name, name)


def preset_reference_markdown() -> str:
    """One table per section: key, type or choices, default, range, help."""
    out = ["`schema_version = 1` comes first; every section and key is optional and defaults as below.", ""]
    for section, model in SECTIONS.items():
        out += [f"### [{section}]", "", "| key | type | default | range | help |", "|---|---|---|---|---|"]
        for key, info in model.model_fields.items():
            default = toml_value(info.get_default(call_default_factory=True))
            help_text = (info.description or "").replace("<", "\\<").replace("|", "\\|")
            out.append(f"| `{key}` | {_type_name(info)} | `{default}` | {field_range(info)} | {help_text} |")
        out.append("")
    return "\n".join(out)
