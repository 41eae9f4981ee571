"""Loading presets: syntax, unknown keys, types, overrides and aliases — every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhf_train.config import check_preset, load_preset, validate_preset_dict
from rlhf_train.config.issues import PresetInvalid
from rlhf_train.config.loader import apply_overrides
from rlhf_train.config.schema import Preset
from rlhf_train.config.writer import preset_to_toml
from tests.conftest import PRESETS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def keys(result) -> list[str]:
    return [e.key for e in result.errors]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_shipped_preset_is_valid(path):
    result = check_preset(path)
    assert result.errors == []
    assert result.preset.run.name == path.stem


def test_minimal_preset_loads_with_defaults(minimal_raw):
    result = validate_preset_dict(minimal_raw)
    assert result.ok
    assert result.preset.rollout.n_samples_per_prompt == 4
    assert result.preset.deepspeed.zero_stage == 2
    assert result.preset.advantage_estimator == "group_norm"


def test_broken_preset_reports_three_errors_each_naming_its_key(tmp_path):
    path = write(tmp_path, """
schema_version = 1
[train]
rollout_batch_size = 3
train_batch_size = 2
micro_train_batch_size = 1
max_steps = "ten"
[rollout]
n_samples_per_promt = 4
""")
    result = check_preset(path)
    assert sorted(keys(result)) == ["[rollout].n_samples_per_promt", "[train].max_steps"]
    # the type error in [train] keeps that section's batch rule from running on bad data,
    # so the indivisible batch shows up once the type is fixed:
    path.write_text(path.read_text().replace('max_steps = "ten"', "max_steps = 10"))
    assert sorted(keys(check_preset(path))) == ["[rollout].n_samples_per_promt", "[train].train_batch_size"]


def test_three_independent_errors_are_all_reported(tmp_path):
    path = write(tmp_path, """
schema_version = 1
[train]
rollout_batch_size = 3
train_batch_size = 2
micro_train_batch_size = 1
[rollout]
n_samples_per_promt = 4
[deepspeed]
zero_stage = "three"
""")
    result = check_preset(path)
    assert sorted(keys(result)) == ["[deepspeed].zero_stage", "[rollout].n_samples_per_promt",
                                    "[train].train_batch_size"]
    by_key = {e.key: e for e in result.errors}
    assert "did you mean [rollout].n_samples_per_prompt?" in by_key["[rollout].n_samples_per_promt"].fix
    assert by_key["[train].train_batch_size"].value == 2
    assert "samples per rollout (3)" in by_key["[train].train_batch_size"].rule
    assert by_key["[deepspeed].zero_stage"].value == "three"


def test_unknown_key_in_the_wrong_section_points_to_the_right_one(minimal_raw):
    minimal_raw["train"]["n_samples_per_prompt"] = 8
    [error] = validate_preset_dict(minimal_raw).errors
    assert error.key == "[train].n_samples_per_prompt"
    assert error.fix == "did you mean [rollout].n_samples_per_prompt?"


def test_openrlhf_name_in_a_file_is_explained(minimal_raw):
    minimal_raw["algo"]["init_kl_coef"] = 0.02
    [error] = validate_preset_dict(minimal_raw).errors
    assert error.key == "[algo].init_kl_coef"
    assert error.fix == "init_kl_coef is OpenRLHF's name; here it is [algo].kl_coef."


def test_unknown_section_suggests_the_close_one(minimal_raw):
    minimal_raw["trian"] = {"max_steps": 3}
    [error] = validate_preset_dict(minimal_raw).errors
    assert (error.key, error.rule, error.fix) == ("[trian]", "unknown section.", "did you mean [train]?")


def test_top_level_key_outside_a_section(minimal_raw):
    minimal_raw["rollout_batch_size"] = 8
    [error] = validate_preset_dict(minimal_raw).errors
    assert error.key == "rollout_batch_size"
    assert "[train].rollout_batch_size" in error.fix


def test_types_are_strict(minimal_raw):
    minimal_raw["rollout"]["enable_sleep"] = 1
    minimal_raw["train"]["max_steps"] = "20"
    minimal_raw["run"]["seed"] = 1.5
    result = validate_preset_dict(minimal_raw)
    assert sorted(keys(result)) == ["[rollout].enable_sleep", "[run].seed", "[train].max_steps"]
    assert all(e.fix for e in result.errors), "every type error carries the field's help"


def test_ranges_and_choices(minimal_raw):
    minimal_raw["rollout"]["top_p"] = 1.5
    minimal_raw["algo"]["kl_estimator"] = "k4"
    minimal_raw["rollout"]["n_samples_per_prompt"] = 0
    result = validate_preset_dict(minimal_raw)
    by_key = {e.key: e for e in result.errors}
    assert set(by_key) == {"[rollout].top_p", "[algo].kl_estimator", "[rollout].n_samples_per_prompt"}
    assert "less than or equal to 1" in by_key["[rollout].top_p"].rule
    assert "'k1', 'k2' or 'k3'" in by_key["[algo].kl_estimator"].rule


def test_schema_version_is_required_and_checked(minimal_raw):
    del minimal_raw["schema_version"]
    assert keys(validate_preset_dict(minimal_raw)) == ["schema_version"]
    minimal_raw["schema_version"] = 2
    [error] = validate_preset_dict(minimal_raw).errors
    assert error.value == 2 and error.fix == "set schema_version = 1."


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "schema_version = 1\n[train]\nmax_steps = = 3\n")
    [error] = check_preset(path).errors
    assert error.key == "preset"
    assert str(path) in error.rule and "line 3" in error.rule


def test_missing_file(tmp_path):
    [error] = check_preset(tmp_path / "nope.toml").errors
    assert "does not exist" in error.rule and "rlhf-train new" in error.fix


def test_section_that_is_not_a_table(minimal_raw):
    minimal_raw["train"] = 5
    [error] = validate_preset_dict(minimal_raw).errors
    assert error.key == "[train]" and error.value == 5


def test_url_string_becomes_a_list(minimal_raw):
    minimal_raw["data"] = {"prompt_data": "p.jsonl"}
    minimal_raw["reward"] = {"kind": "remote", "urls": "http://127.0.0.1:5000/get_reward"}
    preset = validate_preset_dict(minimal_raw).preset
    assert preset.reward.urls == ["http://127.0.0.1:5000/get_reward"]


def test_overrides_are_parsed_as_toml(minimal_raw):
    errors, notes = apply_overrides(minimal_raw, ["train.max_steps=20", "run.name=foo", "rollout.temperature=0.7",
                                                  "reward.urls=[\"http://a\", \"http://b\"]"])
    assert errors == [] and notes == []
    assert minimal_raw["train"]["max_steps"] == 20
    assert minimal_raw["run"]["name"] == "foo"
    assert minimal_raw["rollout"]["temperature"] == 0.7
    assert minimal_raw["reward"]["urls"] == ["http://a", "http://b"]


def test_openrlhf_aliases_resolve_and_are_reported(minimal_raw):
    errors, notes = apply_overrides(minimal_raw, ["n_samples_per_prompt=8", "micro_train_batch_size=4",
                                                  "init_kl_coef=0.05", "colocate_all_models=true", "eps_clip=0.1"])
    assert errors == []
    assert minimal_raw["rollout"]["n_samples_per_prompt"] == 8
    assert minimal_raw["train"]["micro_train_batch_size"] == 4
    assert minimal_raw["algo"]["kl_coef"] == 0.05
    assert minimal_raw["placement"]["colocate"] == "all"
    assert (minimal_raw["algo"]["clip_eps_low"], minimal_raw["algo"]["clip_eps_high"]) == (0.1, 0.1)
    assert notes[0] == "--set n_samples_per_prompt: OpenRLHF's n_samples_per_prompt → " \
                       "[rollout].n_samples_per_prompt = 8"
    assert "[placement].colocate = 'all'" in notes[3]


def test_bad_overrides_are_errors_with_suggestions(minimal_raw):
    errors, _ = apply_overrides(minimal_raw, ["max_step=3", "nonsense"])
    assert [e.key for e in errors] == ["--set max_step", "--set nonsense"]
    assert errors[0].fix == "did you mean [train].max_steps?"


def test_override_with_wrong_type_names_the_key(tmp_path, minimal_raw):
    path = write(tmp_path, preset_to_toml(validate_preset_dict(minimal_raw).preset))
    result = check_preset(path, ["rollout.n_samples_per_prompt=abc"])
    assert keys(result) == ["[rollout].n_samples_per_prompt"]


def test_load_preset_raises_with_every_error(tmp_path):
    path = write(tmp_path, "schema_version = 1\n[train]\nbogus = 1\n[rollout]\ntop_p = 2.0\n")
    with pytest.raises(PresetInvalid) as info:
        load_preset(path)
    assert sorted(e.key for e in info.value.errors) == ["[rollout].top_p", "[train].bogus"]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_write_then_load_round_trips(tmp_path, path):
    preset = load_preset(path)
    for commented in (False, True):
        again = write(tmp_path, preset_to_toml(preset, commented=commented))
        assert load_preset(again) == preset


def test_defaults_round_trip_and_are_valid(tmp_path):
    assert load_preset(write(tmp_path, preset_to_toml(Preset(), commented=True))) == Preset()
