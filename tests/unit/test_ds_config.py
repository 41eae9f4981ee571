"""`deepspeed_config`: the exact DeepSpeed config of each role from [deepspeed] and [train]."""

from __future__ import annotations

import pytest

from rlhf_train.config.schema import Preset
from rlhf_train.distributed.ds_config import deepspeed_config
from rlhf_train.errors import RunError

QUIET = {"steps_per_print": 2**31 - 1, "wall_clock_breakdown": False}


def preset(**sections) -> Preset:
    return Preset.model_validate({"train": {"train_batch_size": 16, "micro_train_batch_size": 2,
                                            "micro_rollout_batch_size": 4, "actor_lr": 1e-6, "critic_lr": 9e-6,
                                            "max_norm": 1.0}} | sections)


def test_actor_zero2_fp32_on_two_ranks():
    assert deepspeed_config(preset(), "actor", 2) == {
        "train_batch_size": 16,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 4,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-6, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.0}},
        "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "none"}},
        "bf16": {"enabled": False},
        **QUIET,
    }


def test_critic_zero3_bf16_with_both_offloads_on_eight_ranks():
    p = preset(deepspeed={"zero_stage": 3, "bf16": True, "offload_optimizer": True, "offload_params": True},
               train={"train_batch_size": 64, "micro_train_batch_size": 4, "critic_lr": 5e-6, "max_norm": 0.0,
                      "weight_decay": 0.1, "adam_beta2": 0.999})
    assert deepspeed_config(p, "critic", 8) == {
        "train_batch_size": 64,
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "gradient_clipping": 0.0,
        "optimizer": {"type": "AdamW", "params": {"lr": 5e-6, "betas": [0.9, 0.999], "eps": 1e-8,
                                                  "weight_decay": 0.1}},
        "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                              "offload_param": {"device": "cpu", "pin_memory": True}},
        "bf16": {"enabled": True},
        **QUIET,
    }


def test_batch_identity_holds_for_every_rank_count():
    p = preset(train={"train_batch_size": 96, "micro_train_batch_size": 3})
    for dp in (1, 2, 4, 8, 16, 32):
        config = deepspeed_config(p, "actor", dp)
        assert config["train_batch_size"] == (
            config["train_micro_batch_size_per_gpu"] * dp * config["gradient_accumulation_steps"])


def test_reference_is_sharded_under_zero3():
    p = preset(deepspeed={"zero_stage": 3, "bf16": True})
    assert deepspeed_config(p, "reference", 4) == {
        "train_batch_size": 16,
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 3, "offload_param": {"device": "none"}},
        "bf16": {"enabled": True},
        **QUIET,
    }


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_reward_model_is_plain_below_zero3(stage):
    assert deepspeed_config(preset(deepspeed={"zero_stage": stage}), "reward", 2) == {
        "train_batch_size": 8,
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 0},
        "bf16": {"enabled": False},
        **QUIET,
    }


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown role 'engine'"):
        deepspeed_config(preset(), "engine", 1)


def test_optimizer_offload_without_zero_is_a_clear_error():
    with pytest.raises(RunError, match=r"offload_optimizer = true needs ZeRO"):
        deepspeed_config(preset(deepspeed={"zero_stage": 0, "offload_optimizer": True}), "actor", 1)


def test_batch_that_does_not_split_over_the_ranks_is_a_clear_error():
    with pytest.raises(RunError, match=r"train_batch_size = 16 is not a multiple of .* 2 × 3"):
        deepspeed_config(preset(), "actor", 3)
