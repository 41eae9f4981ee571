"""Load a TOML preset: syntax, `--set` overrides, unknown keys, types and ranges, then the
cross-field rules — every error at once, each naming its `[section].key`.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from rlhf_train.config.aliases import ALIASES
from rlhf_train.config.issues import PresetInvalid, PresetIssue, key_name
from rlhf_train.config.rules import run_rules
from rlhf_train.config.schema import SCHEMA_VERSION, SECTIONS, Preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


@dataclass
class LoadResult:
    """What loading found. `preset` is set when there are no errors."""

    preset: Preset | None
    errors: list[PresetIssue] = field(default_factory=list)
    warnings: list[PresetIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_toml(path: Path) -> tuple[dict | None, list[PresetIssue]]:
    """The TOML document at `path`, or the reason it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [PresetIssue("preset", f"file {path} does not exist.",
                                  fix="check the path, or create one with `rlhf-train new NAME`.")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [PresetIssue("preset", f"cannot read {path}: {exc}.")]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return None, [PresetIssue("preset", f"{path} is not valid TOML: {exc}.",
                                  fix="fix the syntax at that line (strings need quotes, tables [section]).")]


def parse_override_value(text: str) -> object:
    """A `--set` value parsed as TOML (`20`, `true`, `"a"`, `[1, 2]`); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> tuple[list[PresetIssue], list[str]]:
    """Apply `section.key=value` (or an OpenRLHF flag name `key=value`) to `raw` in place.

    Returns errors for malformed overrides and notes saying how aliases were resolved.
    """
    errors: list[PresetIssue] = []
    notes: list[str] = []
    for item in overrides:
        name, sep, text = item.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name:
            errors.append(PresetIssue(f"--set {item}", "an override must look like section.key=value.",
                                      fix="e.g. --set train.max_steps=20"))
            continue
        value = parse_override_value(text.strip())
        if "." in name:
            section, _, key = name.partition(".")
            assignments = [(section, key, value)]
        elif name in ALIASES:
            assignments = ALIASES[name].resolve(value)
            targets = ", ".join(f"{key_name(s, k)} = {v!r}" for s, k, v in assignments)
            notes.append(f"--set {name}: OpenRLHF's {name} → {targets}")
        else:
            errors.append(PresetIssue(f"--set {name}", "not a section.key and not a known OpenRLHF flag name.",
                                      fix=_suggest_anywhere(name) or "write it as section.key=value."))
            continue
        for section, key, new_value in assignments:
            table = raw.setdefault(section, {})
            if isinstance(table, dict):
                table[key] = new_value
    return errors, notes


def _suggest_anywhere(key: str) -> str:
    """"did you mean" over every `[section].key` of the schema and the OpenRLHF aliases: the same
    key in another section first, then an OpenRLHF flag name, then the closest spelling."""
    everywhere = {k: s for s, model in SECTIONS.items() for k in model.model_fields}
    if key in everywhere:
        return f"did you mean {key_name(everywhere[key], key)}?"
    if key in ALIASES:
        targets = " and ".join(key_name(s, k) for s, k in ALIASES[key].targets)
        return f"{key} is OpenRLHF's name; here it is {targets}."
    close = difflib.get_close_matches(key, list(everywhere), n=1, cutoff=0.75)
    return f"did you mean {key_name(everywhere[close[0]], close[0])}?" if close else ""


def _as_written(key: str) -> str:
    """A user's key as TOML would need it written: bare when it can be, else quoted (`" "`, `"a.b"`)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _unknown_key(section: str, key: str) -> PresetIssue:
    known = list(SECTIONS[section].model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    exact_elsewhere = any(key in model.model_fields for model in SECTIONS.values())
    if exact_elsewhere or key in ALIASES or not close:
        fix = _suggest_anywhere(key)
    else:
        fix = f"did you mean {key_name(section, close[0])}?"
    return PresetIssue(key_name(section, _as_written(key)), "unknown key.",
                       fix=fix or f"known keys: {', '.join(known)}.")


def _friendly(error: dict, model: type[BaseModel]) -> tuple[str, str]:
    """A pydantic error as (rule, fix), with the field's allowed values where there are few."""
    rule = error["msg"][0].lower() + error["msg"][1:] + "."
    field_name = str(error["loc"][0]) if error["loc"] else ""
    info = model.model_fields.get(field_name)
    fix = f"{field_name}: {info.description}" if info and info.description else ""
    return rule, fix


def _validate_section(section: str, table: object) -> tuple[BaseModel | None, list[PresetIssue]]:
    model = SECTIONS[section]
    if not isinstance(table, dict):
        return None, [PresetIssue(key_name(section), f"must be a table ([{section}] with keys), not a value.",
                                  value=table)]
    issues = [_unknown_key(section, k) for k in table if k not in model.model_fields]
    known = {k: v for k, v in table.items() if k in model.model_fields}
    try:
        return model(**known), issues
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            key = key_name(section, ".".join(str(part) for part in loc))
            rule, fix = _friendly(err, model)
            value = known.get(str(loc[0]), err.get("input")) if loc else table
            issues.append(PresetIssue(key, rule, fix=fix, value=value))
        return None, issues


def validate_preset_dict(raw: dict) -> LoadResult:
    """Validate a parsed TOML document (overrides already applied)."""
    result = LoadResult(preset=None)
    version = raw.get("schema_version")
    if version is None:
        result.errors.append(PresetIssue("schema_version", "missing.", fix=f"add `schema_version = {SCHEMA_VERSION}`"
                                                                           " at the top of the file."))
    elif type(version) is not int or version != SCHEMA_VERSION:  # `true` and 1.0 equal 1 in Python
        result.errors.append(PresetIssue("schema_version", f"this rlhf-train reads version {SCHEMA_VERSION}.",
                                         value=version, fix=f"set schema_version = {SCHEMA_VERSION}."))
    sections: dict[str, BaseModel] = {}
    for name, table in raw.items():
        if name == "schema_version":
            continue
        if name not in SECTIONS:
            result.errors.append(_unknown_top_level(name, table))
            continue
        model, issues = _validate_section(name, table)
        result.errors += issues
        if model is not None:  # unknown keys alone do not stop the section's rules from running
            sections[name] = model
    parsed = set(sections) | {s for s in SECTIONS if s not in raw}
    preset = Preset(**sections)
    errors, warnings = run_rules(preset, parsed)
    result.errors += errors
    result.warnings += warnings
    if not result.errors:
        result.preset = preset
    return result


def _unknown_top_level(name: str, value: object) -> PresetIssue:
    if not isinstance(value, dict):
        hint = _suggest_anywhere(name)
        return PresetIssue(_as_written(name), "unknown top-level key (keys belong in a [section]).", value=value,
                           fix=hint or "put it under its section.")
    close = difflib.get_close_matches(name, list(SECTIONS), n=1, cutoff=0.6)
    fix = f"did you mean [{close[0]}]?" if close else f"sections are: {', '.join(SECTIONS)}."
    return PresetIssue(key_name(_as_written(name)), "unknown section.", fix=fix)


def check_preset(path: str | Path, overrides: list[str] | None = None) -> LoadResult:
    """Read, override and validate a preset file; never raises for bad input."""
    raw, errors = read_toml(Path(path))
    if raw is None:
        return LoadResult(preset=None, errors=errors)
    override_errors, notes = apply_overrides(raw, list(overrides or []))
    result = validate_preset_dict(raw)
    result.errors = override_errors + result.errors
    result.notes = notes
    if result.errors:
        result.preset = None
    return result


def load_preset(path: str | Path, overrides: list[str] | None = None) -> Preset:
    """The validated preset, or `PresetInvalid` carrying every error."""
    result = check_preset(path, overrides)
    if result.preset is None:
        raise PresetInvalid(result.errors, result.warnings)
    return result.preset
