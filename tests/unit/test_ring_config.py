"""`check`'s batch maths and rules with ring attention: data-parallel ranks = workers / ring size,
and the packed samples per ring count rollout_batch_size × n_samples_per_prompt (n = 1, 2, 4)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rlhf_train.config import validate_preset_dict
from rlhf_train.config.batch import plan_batches
from rlhf_train.distributed.ds_config import deepspeed_config

PRESETS = Path(__file__).resolve().parents[2] / "presets"


def ring2(**train) -> dict:
    raw = tomllib.loads((PRESETS / "tiny-cpu-ring2.toml").read_text())
    raw["train"].update(train)
    return raw


@pytest.mark.parametrize("n", [1, 2, 4])
def test_packed_samples_per_ring_count_every_sample_of_every_prompt(n):
    raw = ring2(rollout_batch_size=16)
    raw["rollout"]["n_samples_per_prompt"] = n
    raw["algo"]["name"] = "reinforce_baseline" if n > 1 else "reinforce_pp"
    raw["placement"]["actor_workers"] = 4  # two rings of 2
    raw["train"].update(train_batch_size=16 * n, micro_train_batch_size=4, micro_rollout_batch_size=4)
    result = validate_preset_dict(raw)
    assert not result.errors, [e.render() for e in result.errors]
    plan = plan_batches(result.preset)
    assert (plan.actor_data_parallel, plan.ring_size) == (2, 2)
    assert plan.samples_per_rank == 16 * n // 2
    assert plan.gradient_accumulation_steps == 16 * n // (4 * 2)
    line = [x for x in plan.lines(result.preset) if x.startswith("packed samples per ring")]
    assert line == [f"packed samples per ring      {8 * n} = {16 * n} / 2 data-parallel ranks "
                    "(rings of 2 ranks: 4 actor workers / 2)"]


def test_deepspeed_counts_every_ring_rank_in_its_batch():
    preset = validate_preset_dict(ring2()).preset
    config = deepspeed_config(preset, "actor", 1, ring_size=2)
    assert config["gradient_accumulation_steps"] == 2  # 128 / (64 micro × 1 data-parallel rank)
    assert config["train_batch_size"] == 64 * 2 * 2  # micro × accumulation × 2 ranks, as DeepSpeed checks it


def test_a_reference_of_its_own_size_must_hold_whole_rings():
    raw = ring2()
    raw["placement"]["ref_workers"] = 3
    errors = validate_preset_dict(raw).errors
    assert [(e.key, e.rule) for e in errors] == [
        ("[ring_attention].size", "must divide the reference's 3 workers (each ring is 2 workers).")]
