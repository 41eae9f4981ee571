"""The builder's TOML document logic: values per key, changes, comment-keeping saves, --set lines."""

from __future__ import annotations

import pytest

from rlhf_train.config.loader import check_preset, load_preset, parse_override_value
from rlhf_train.config.schema import SECTIONS, Preset
from rlhf_tui.preset_doc import PresetDoc, PresetDocError, command_line, override_args, same_value

HAND_WRITTEN = """\
# My GRPO run: hand-tuned, keep these notes.
schema_version = 1

[run]
name = "mine"   # short, it ends up in directory names

[rollout]
# group size for GRPO
n_samples_per_prompt = 8
max_new_tokens = 3

[algo]
name = "grpo"

[train]
rollout_batch_size = 16
train_batch_size = 128      # one optimizer step per rollout
micro_train_batch_size = 128
micro_rollout_batch_size = 128
"""


def test_base_gives_every_schema_key_as_written_or_default():
    base = PresetDoc(HAND_WRITTEN).base()
    assert {s: set(t) for s, t in base.items()} == {s: set(m.model_fields) for s, m in SECTIONS.items()}
    assert base["rollout"]["n_samples_per_prompt"] == 8
    assert base["rollout"]["temperature"] == 1.0  # not written: the default
    assert base["reward"]["urls"] == []


def test_unchanged_save_is_byte_identical(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(HAND_WRITTEN)
    doc = PresetDoc.read(path)
    assert doc.changes(doc.base()) == []
    saved = doc.saved_to(path, [])
    assert path.read_text() == HAND_WRITTEN
    assert saved.origin == path and saved.text == HAND_WRITTEN


def test_changing_two_values_keeps_comments_and_passes_check(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(HAND_WRITTEN)
    doc = PresetDoc.read(path)
    values = doc.base()
    values["rollout"]["n_samples_per_prompt"] = 16
    values["train"]["actor_lr"] = 3e-4  # not in the file yet: appended to [train]
    changes = doc.changes(values)
    assert changes == [("rollout", "n_samples_per_prompt", 16), ("train", "actor_lr", 3e-4)]
    doc.saved_to(path, changes)
    text = path.read_text()
    for comment in ("# My GRPO run: hand-tuned, keep these notes.", "# short, it ends up in directory names",
                    "# group size for GRPO", "# one optimizer step per rollout"):
        assert comment in text
    assert "n_samples_per_prompt = 16\n" in text
    assert text.replace("n_samples_per_prompt = 16", "n_samples_per_prompt = 8").replace(
        "micro_rollout_batch_size = 128\nactor_lr = 0.0003\n", "micro_rollout_batch_size = 128\n") == HAND_WRITTEN
    assert check_preset(path).ok
    preset = load_preset(path)
    assert preset.rollout.n_samples_per_prompt == 16 and preset.train.actor_lr == 3e-4
    assert preset.run.name == "mine"


def test_a_missing_section_is_appended(tmp_path):
    doc = PresetDoc(HAND_WRITTEN)
    text = doc.render([("deepspeed", "zero_stage", 0)])
    assert text == HAND_WRITTEN + "\n[deepspeed]\nzero_stage = 0\n"


def test_new_preset_is_the_commented_defaults_and_loads_to_them(tmp_path):
    doc = PresetDoc.new()
    assert doc.origin is None
    assert "# Run name; the run directory is" in doc.text
    path = tmp_path / "new.toml"
    doc.saved_to(path, [("run", "name", "fresh")])
    assert load_preset(path) == Preset.model_validate({"run": {"name": "fresh"}})


def test_merged_keeps_unknown_keys_for_validation():
    doc = PresetDoc(HAND_WRITTEN + "typo_key = 1\n")
    merged = doc.merged([("train", "max_steps", 5)])
    assert merged["train"]["typo_key"] == 1 and merged["train"]["max_steps"] == 5
    assert "max_steps" not in doc.raw["train"], "merged must not change the document"


def test_same_value_equates_int_and_float_but_not_bool():
    assert same_value(1, 1.0)
    assert not same_value(True, 1)
    assert not same_value("1", 1)


@pytest.mark.parametrize("text, why", [("schema_version = [", "is not valid TOML"), (None, "does not exist")])
def test_read_errors_name_the_file(tmp_path, text, why):
    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PresetDocError, match=why) as info:
        PresetDoc.read(path)
    assert str(path) in str(info.value)


def test_save_into_a_missing_directory_says_so(tmp_path):
    with pytest.raises(PresetDocError, match="does not exist"):
        PresetDoc.new().saved_to(tmp_path / "nope" / "p.toml", [])


def test_command_line_quotes_values_and_they_parse_back(tmp_path):
    changes = [("run", "name", "my run"), ("train", "max_steps", 20), ("reward", "urls", ["http://a"])]
    assert override_args(changes) == ['run.name="my run"', "train.max_steps=20", 'reward.urls=["http://a"]']
    line = command_line(tmp_path / "p.toml", changes)
    assert line == (f"rlhf-train {tmp_path / 'p.toml'} --set 'run.name=\"my run\"' --set train.max_steps=20 "
                    "--set 'reward.urls=[\"http://a\"]'")
    for arg, (_, _, value) in zip(override_args(changes), changes):
        assert parse_override_value(arg.partition("=")[2]) == value


def test_command_line_is_relative_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "presets").mkdir()
    assert command_line(tmp_path / "presets" / "foo.toml", []) == "rlhf-train presets/foo.toml"
