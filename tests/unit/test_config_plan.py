"""The plan `check` prints, against OpenRLHF's own formulas on its documented example setups, and
the placement and memory arithmetic on hand-computed cases.

OpenRLHF v0.6 formulas (openrlhf/utils/deepspeed/deepspeed.py and trainer/ppo_trainer.py):
    accumulated_gradient          = train_batch_size * ring_attn_size // micro_train_batch_size // world_size
    num_update_steps_per_episodes = len(prompts) * n_samples_per_prompt // train_batch_size * max_epochs
    prompt dataloader             : batch rollout_batch_size, drop_last=True
"""

from __future__ import annotations

import pytest

from rlhf_train.config import validate_preset_dict
from rlhf_train.config.memory import GIB
from rlhf_train.config.plan import make_plan


def openrlhf_accumulated_gradient(train_batch_size, ring_attn_size, micro_train_batch_size, world_size):
    return train_batch_size * ring_attn_size // micro_train_batch_size // world_size


def plan_for(raw: dict, prompts: int | None = None):
    result = validate_preset_dict({"schema_version": 1, **raw})
    assert result.errors == [], [e.render() for e in result.errors]
    plan = make_plan(result.preset)
    if prompts is not None:
        from rlhf_train.config.batch import plan_batches

        plan.batches = plan_batches(result.preset, prompts)
    return plan


# examples/scripts/train_ppo_llama_ray_70b.sh (OpenRLHF): ref 1×2, reward 1×2, critic 1×4, actor 1×4,
# vllm 2 engines × TP 2, micro_train 1, train 128, micro_rollout 2, rollout 1024, max_samples 10000,
# max_epochs 1, zero 3, adam_offload.
OPENRLHF_70B = {
    "model": {"actor": "/models/llama-3-70b", "size_hint_b": 70.6},
    "data": {"prompt_data": "/data/p.jsonl", "max_samples": 10000},
    "rollout": {"engine": "vllm", "num_engines": 2, "tensor_parallel_size": 2},
    "algo": {"name": "ppo", "kl_coef": 0.01},
    "train": {"rollout_batch_size": 1024, "train_batch_size": 128, "micro_train_batch_size": 1,
              "micro_rollout_batch_size": 2},
    "deepspeed": {"zero_stage": 3, "bf16": True, "offload_optimizer": True},
    "placement": {"mode": "ray", "nodes": 2, "gpus_per_node": 8, "actor_workers": 4, "critic_workers": 4,
                  "ref_workers": 2, "reward_workers": 2},
    "reward": {"kind": "model", "model": "/models/rm"},
}

# The hybrid-engine example of OpenRLHF's README (v0.6): 8 GPUs, colocate_all_models, vllm 4 × TP 2,
# micro_train 8, train 128, micro_rollout 16, rollout 1024, n 1, max_samples 100000, zero 3.
OPENRLHF_HYBRID = {
    "model": {"actor": "/models/llama-3-8b-sft", "size_hint_b": 8.03},
    "data": {"prompt_data": "/data/p.jsonl", "max_samples": 100000},
    "rollout": {"engine": "vllm", "num_engines": 4, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                "enable_sleep": True},
    "algo": {"name": "ppo", "kl_coef": 0.01},
    "train": {"rollout_batch_size": 1024, "train_batch_size": 128, "micro_train_batch_size": 8,
              "micro_rollout_batch_size": 16, "packing_samples": True},
    "deepspeed": {"zero_stage": 3, "bf16": True, "enable_sleep": True},
    "placement": {"mode": "ray", "nodes": 1, "gpus_per_node": 8, "colocate": "all", "actor_workers": 8},
    "reward": {"kind": "model", "model": "/models/rm"},
}

# The REINFORCE++ 72B example (OpenRLHF examples/scripts): ref 2×8, actor 2×8, colocate_actor_ref,
# vllm 2 × TP 4, micro_train 2, train 128, micro_rollout 4, rollout 128, n 1.
OPENRLHF_REINFORCE_72B = {
    "model": {"actor": "/models/qwen2.5-72b", "size_hint_b": 72.7},
    "data": {"prompt_data": "/data/p.jsonl"},
    "rollout": {"engine": "vllm", "num_engines": 2, "tensor_parallel_size": 4},
    "algo": {"name": "reinforce_pp", "kl_coef": 0.01},
    "train": {"rollout_batch_size": 128, "train_batch_size": 128, "micro_train_batch_size": 2,
              "micro_rollout_batch_size": 4},
    "deepspeed": {"zero_stage": 3, "bf16": True},
    "placement": {"mode": "ray", "nodes": 3, "gpus_per_node": 8, "colocate": "actor_ref", "actor_workers": 16},
    "reward": {"kind": "remote", "urls": "http://rm:5000/get_reward"},
}


@pytest.mark.parametrize("raw,actor_world,prompts", [(OPENRLHF_70B, 4, 10000), (OPENRLHF_HYBRID, 8, 100000),
                                                     (OPENRLHF_REINFORCE_72B, 16, 12800)])
def test_batch_maths_matches_openrlhf(raw, actor_world, prompts):
    plan = plan_for(raw, prompts)
    t = raw["train"]
    n = raw["rollout"].get("n_samples_per_prompt", 1)
    b = plan.batches
    assert b.gradient_accumulation_steps == openrlhf_accumulated_gradient(t["train_batch_size"], 1,
                                                                          t["micro_train_batch_size"], actor_world)
    assert b.samples_per_rollout == t["rollout_batch_size"] * n
    # OpenRLHF sizes its LR schedule as len(prompts)·n // train_batch·epochs; the loader drops the last
    # partial rollout batch, so the optimizer steps actually taken are the whole rollouts' worth:
    openrlhf_schedule_steps = prompts * n // t["train_batch_size"]
    taken = (prompts // t["rollout_batch_size"]) * (t["rollout_batch_size"] * n // t["train_batch_size"])
    assert b.optimizer_steps_total == taken
    assert taken <= openrlhf_schedule_steps < taken + t["rollout_batch_size"] * n // t["train_batch_size"]


def test_openrlhf_70b_numbers_spelled_out():
    plan = plan_for(OPENRLHF_70B, 10000)
    b = plan.batches
    assert (b.samples_per_rank, b.gradient_accumulation_steps, b.optimizer_steps_per_rollout) == (256, 32, 8)
    assert (b.forward_passes_per_rank, b.rl_steps, b.optimizer_steps_total) == (128, 9, 72)
    assert (plan.placement.gpus_needed, plan.placement.gpus_available) == (16, 16)
    slots = plan.placement.slots
    assert [(s.node, s.gpu) for s in slots["actor"]] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert [(s.node, s.gpu) for s in slots["engine"]] == [(1, 4), (1, 5), (1, 6), (1, 7)]
    assert all(s.fraction == 1.0 for role in slots.values() for s in role)


def test_hybrid_engine_shares_every_gpu_five_ways():
    plan = plan_for(OPENRLHF_HYBRID, 100000)
    assert plan.batches.gradient_accumulation_steps == 2 and plan.batches.rl_steps == 97
    for role in ("actor", "reference", "critic", "reward", "engine"):
        assert [(s.node, s.gpu, s.fraction) for s in plan.placement.slots[role]] == [(0, g, 0.2) for g in range(8)]
    assert plan.placement.gpus_needed == 8


def test_memory_of_the_hybrid_engine_by_hand():
    plan = plan_for(OPENRLHF_HYBRID)
    p = int(8.03e9)
    actor = plan.memory.roles["actor"]
    assert actor.gpu == {"weights": p * 2 // 8, "gradients": p * 2 // 8, "optimizer": p * 12 // 8}
    assert plan.memory.roles["reference"].gpu == {"weights": p * 2 // 8}
    engine = plan.memory.roles["engine"]
    assert engine.gpu["weights"] == p * 2 // 2
    assert engine.gpu["weights"] + engine.gpu["kv_cache"] == int(0.5 * 80 * GIB)
    frozen = 2 * (p * 2 // 8)
    trained = 2 * (p * 2 // 8 + p * 2 // 8 + p * 12 // 8)
    generation = int(0.5 * 80 * GIB) + frozen            # DeepSpeed states asleep on the host
    training = trained // 2 + frozen                       # engines asleep, one trained role at a time
    group = ("actor", "reference", "critic", "reward", "engine")
    assert plan.memory.gpu_peak[group] == max(generation, training)
    assert plan.memory.host_peak == {0: 8 * trained}


def test_offload_moves_optimizer_state_to_the_host():
    plan = plan_for(OPENRLHF_70B)
    p = int(70.6e9)
    actor = plan.memory.roles["actor"]
    assert "optimizer" not in actor.gpu and actor.host == {"optimizer": p * 12 // 4}
    assert plan.memory.host_peak == {0: 4 * p * 12 // 4 + 2 * p * 12 // 4, 1: 2 * p * 12 // 4}


def test_tiny_model_size_is_read_from_the_builtin_spec():
    from rlhf_train.models.tiny import build_tiny_model

    plan = plan_for({})
    assert plan.shape.params == sum(p.numel() for p in build_tiny_model().parameters()) == 301_952
    assert (plan.shape.layers, plan.shape.kv_heads, plan.shape.head_dim) == (2, 2, 32)


def test_an_hf_engine_under_ray_holds_only_its_weights():
    plan = plan_for({"placement": {"mode": "ray"}})
    engine = plan.memory.roles["engine"]
    assert engine.gpu == {"weights": 301_952 * 4}
    assert engine.kv_cache_tokens is None


def test_model_size_from_an_hf_directory_and_a_gguf_file(tmp_path):
    from rlhf_train.config.model_shape import model_shape
    from rlhf_train.models.tiny import build_tiny_model, save_tiny

    save_tiny(tmp_path / "tiny", seed=1)
    shape = model_shape(str(tmp_path / "tiny"))
    assert shape.params == sum(p.numel() for p in build_tiny_model().parameters())
    assert shape.kv_bytes_per_token(2) == 2 * 2 * 2 * 32 * 2
    assert model_shape(str(tmp_path / "missing")) is None
    assert model_shape(str(tmp_path / "missing"), size_hint_b=1.5).params == 1_500_000_000
