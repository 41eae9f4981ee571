"""Property: whatever a user does to a shipped preset, loading it never raises.

Every preset in presets/ is mutated at random — keys deleted, set to values of any type and size,
renamed with typos, unknown keys and sections added, `--set` overrides of random text — and the
result must be either valid (and then plan, write and reload cleanly) or carry at least one error,
each naming a key and a rule. A sample goes through the real CLI in a subprocess: exit 0 or 2,
never a traceback, and the same verdict as in-process.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Literal, get_args, get_origin

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf_train.config import check_preset, validate_preset_dict
from rlhf_train.config.aliases import ALIASES
from rlhf_train.config.loader import LoadResult, apply_overrides
from rlhf_train.config.plan import make_plan
from rlhf_train.config.schema import SECTIONS
from rlhf_train.config.writer import preset_to_toml
from tests.conftest import PRESETS, REPO

RAW_PRESETS = {path.name: tomllib.loads(path.read_text()) for path in PRESETS}
SCHEMA_KEYS = sorted({key for model in SECTIONS.values() for key in model.model_fields})
SECTION_NAMES = sorted(SECTIONS)


# ---- a small TOML writer for arbitrary values ------------------------------------------------

def toml_string(text: str) -> str:
    # json.dumps escapes quotes, backslashes and C0 controls; TOML also forbids a raw DEL
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(raw: dict) -> str:
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for name, table in raw.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_string(name)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def test_writer_round_trips_the_presets():
    for raw in RAW_PRESETS.values():
        assert tomllib.loads(to_toml(raw)) == raw


# ---- mutations -------------------------------------------------------------------------------

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, 3, -1, 7, 64, 1024, 2**31, 2**53 + 1, 10**15, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, 1e-300, 1e300, -1e9]),
    st.text(max_size=24),
    st.sampled_from(["", "auto", "vllm", "hf", "all", "none", "ray", "local", "builtin:tiny", "builtin:arith",
                     "x.py:f", "http://h:1/r", "grpo", "ppo", "k2", "k3", "flash", "token", "0", "true"]),
    st.booleans(),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=6), scalars, max_size=3),
)
names = st.one_of(st.sampled_from(SCHEMA_KEYS), st.text(max_size=12))


def plausible(annotation: object) -> st.SearchStrategy:
    """Values of a field's own type, mostly in range: they keep many mutated presets valid, so that
    the valid path (plan, write, reload) is exercised too."""
    if get_origin(annotation) is Literal:
        return st.sampled_from(get_args(annotation))
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.one_of(st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128]), st.integers(0, 200))
    if annotation is float:
        return st.one_of(st.sampled_from([0.0, 0.01, 0.2, 0.5, 0.9, 1.0, 2.0, 3.0]),
                         st.floats(0.0, 2.0, allow_nan=False))
    if annotation is str:
        return st.one_of(st.sampled_from(["", "builtin:tiny", "builtin:arith", "runs", "r.py:score", "m/"]),
                         st.text(max_size=10))
    return st.lists(st.sampled_from(["http://h:1/r", "https://h/r", "h:1"]), max_size=2)


FIELDS = [(section, key, info.annotation) for section, model in SECTIONS.items()
          for key, info in model.model_fields.items()]


def typo(draw, key: str) -> str:
    if not key:
        return "x"
    i = draw(st.integers(0, len(key) - 1))
    kind = draw(st.sampled_from(["drop", "double", "swap", "replace", "upper", "dash"]))
    if kind == "drop":
        out = key[:i] + key[i + 1:]
    elif kind == "double":
        out = key[:i] + key[i] + key[i:]
    elif kind == "swap" and len(key) > 1:
        i = min(i, len(key) - 2)
        out = key[:i] + key[i + 1] + key[i] + key[i + 2:]
    elif kind == "upper":
        out = key.upper()
    elif kind == "dash":
        out = key.replace("_", "-")
    else:
        out = key[:i] + draw(st.sampled_from("aeiouxz_")) + key[i + 1:]
    return out if out != key else key + "s"


def mutate(draw, raw: dict) -> tuple[dict, list[str]]:
    """A mutated copy of `raw` and a list of `--set` overrides."""
    raw = copy.deepcopy(raw)
    overrides: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["plausible"] * 6 + ["delete", "set", "set", "set_section", "unknown_key",
                                                       "unknown_section", "typo", "override", "override"]))
        tables = [name for name, table in raw.items() if isinstance(table, dict)]
        if op == "plausible":
            section, key, annotation = draw(st.sampled_from(FIELDS))
            value = draw(plausible(annotation))
            if draw(st.integers(0, 3)) == 0:
                overrides.append(f"{section}.{key}={toml_value(value)}")
            elif isinstance(raw.setdefault(section, {}), dict):
                raw[section][key] = value
        elif op == "delete":
            where = draw(st.sampled_from(["schema_version"] + tables))
            if where == "schema_version" or draw(st.booleans()) or not raw[where]:
                raw.pop(where, None)
            else:
                raw[where].pop(draw(st.sampled_from(sorted(raw[where]))))
        elif op == "set":
            section = draw(st.sampled_from(SECTION_NAMES + tables))
            table = raw.setdefault(section, {})
            if isinstance(table, dict):
                table[draw(st.one_of(st.sampled_from(sorted(table) or ["x"]), names))] = draw(values)
        elif op == "set_section":  # a section or schema_version replaced by a value
            raw[draw(st.sampled_from(SECTION_NAMES + ["schema_version"]))] = draw(values)
        elif op == "unknown_key":
            section = draw(st.sampled_from(SECTION_NAMES))
            table = raw.setdefault(section, {})
            if isinstance(table, dict):
                table[draw(st.text(min_size=1, max_size=12))] = draw(values)
        elif op == "unknown_section":
            raw[draw(st.text(min_size=1, max_size=12))] = draw(st.one_of(
                st.dictionaries(names, values, max_size=3), values))
        elif op == "typo" and tables:
            section = draw(st.sampled_from(tables))
            if raw[section] and draw(st.booleans()):
                key = draw(st.sampled_from(sorted(raw[section])))
                raw[section][typo(draw, key)] = raw[section].pop(key)
            else:
                raw[typo(draw, section)] = raw.pop(section)
        elif op == "override":
            name = draw(st.one_of(
                st.builds(lambda s, k: f"{s}.{k}", st.sampled_from(SECTION_NAMES), names),
                st.sampled_from(sorted(ALIASES)),
                st.text(max_size=12),
            ))
            text = draw(st.one_of(st.builds(toml_value, values), st.text(max_size=16)))
            overrides.append(draw(st.sampled_from([f"{name}={text}", f"--{name}={text}", name, text])))
    return raw, overrides


@st.composite
def mutated_presets(draw) -> tuple[str, dict, list[str]]:
    name = draw(st.sampled_from(sorted(RAW_PRESETS)))
    raw, overrides = mutate(draw, RAW_PRESETS[name])
    return name, raw, overrides


# ---- what must hold --------------------------------------------------------------------------

def assert_well_formed(result: LoadResult) -> None:
    if result.errors:
        assert result.preset is None
        assert not result.ok
    else:
        assert result.preset is not None
    for issue in result.errors + result.warnings:
        assert isinstance(issue.key, str) and issue.key.strip(), issue
        assert isinstance(issue.rule, str) and issue.rule.strip(), issue
        assert issue.render().startswith(issue.key)
        json.dumps(issue.as_json(), default=str)


def assert_valid_preset_is_usable(result: LoadResult) -> None:
    """A valid preset plans, renders, and survives write → load unchanged."""
    preset = result.preset
    plan = make_plan(preset)
    assert "batches" in plan.render()
    json.dumps(plan.as_json(), default=str)
    again = validate_preset_dict(tomllib.loads(preset_to_toml(preset, commented=True)))
    assert again.errors == [] and again.preset == preset


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_presets())
def test_mutated_presets_never_raise(case):
    _, raw, overrides = case
    override_errors, notes = apply_overrides(raw, overrides)
    result = validate_preset_dict(raw)
    result.errors = override_errors + result.errors
    if result.errors:
        result.preset = None
    assert_well_formed(result)
    assert all(isinstance(note, str) and note for note in notes)
    if result.ok:
        assert type(raw["schema_version"]) is int and raw["schema_version"] == 1
        assert_valid_preset_is_usable(result)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_presets())
def test_mutated_preset_files_never_raise(case):
    _, raw, overrides = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.toml"
        path.write_text(to_toml(raw), encoding="utf-8")
        result = check_preset(path, overrides)
    assert_well_formed(result)
    if result.ok:
        assert_valid_preset_is_usable(result)


def test_unchanged_presets_stay_valid():
    for name, raw in RAW_PRESETS.items():
        result = validate_preset_dict(copy.deepcopy(raw))
        assert result.errors == [], name
        assert_valid_preset_is_usable(result)


# ---- through the real CLI --------------------------------------------------------------------

def cli_safe(text: str) -> bool:
    return "\x00" not in text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_presets())
def test_cli_check_exits_0_or_2_without_traceback(case):
    _, raw, overrides = case
    overrides = [o for o in overrides if cli_safe(o)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.toml"
        path.write_text(to_toml(raw), encoding="utf-8")
        expected = check_preset(path, overrides)
        args = [sys.executable, "-m", "rlhf_train.cli", "check", str(path)]
        for override in overrides:
            args.append(f"--set={override}")  # (`--set -x` would be read by argparse as an option)
        proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=60)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode in (0, 2), output
    assert proc.returncode == (0 if expected.ok else 2), output
    first = proc.stdout.splitlines()[0]
    if expected.ok:
        assert first == f"{path}: valid"
    else:
        count = len(expected.errors)
        assert first == f"{path}: {count} error{'s' if count != 1 else ''}"
        assert proc.stdout.count("  error: ") == count


# ---- cases the property found (kept as plain examples) ---------------------------------------

def test_schema_version_must_be_the_integer_one():
    for version in (True, 1.0, "1"):
        raw = copy.deepcopy(RAW_PRESETS["gpu8-7b-hybrid.toml"])
        raw["schema_version"] = version
        [error] = validate_preset_dict(raw).errors
        assert (error.key, error.value) == ("schema_version", version)


def test_odd_unknown_key_names_are_quoted():
    raw = copy.deepcopy(RAW_PRESETS["gpu8-7b-hybrid.toml"])
    raw[""] = 0
    raw["tr ain"] = {}
    raw["train"]["a.b"] = 1
    keys = sorted(e.key for e in validate_preset_dict(raw).errors)
    assert keys == ['""', '["tr ain"]', '[train]."a.b"']


def test_string_with_del_writes_valid_toml():
    raw = copy.deepcopy(RAW_PRESETS["gpu8-7b-hybrid.toml"])
    raw["data"]["input_key"] = "a\x7fb"
    assert_valid_preset_is_usable(validate_preset_dict(raw))


def test_huge_indivisible_batches_are_checked_quickly():
    raw = copy.deepcopy(RAW_PRESETS["gpu8-7b-hybrid.toml"])
    raw["train"].update(rollout_batch_size=10**12, train_batch_size=10**12 - 8, micro_train_batch_size=1)
    started = time.perf_counter()
    [error] = validate_preset_dict(raw).errors
    assert time.perf_counter() - started < 1.0
    assert error.key == "[train].train_batch_size"
    assert "(e.g. 500000000000)" in error.fix
