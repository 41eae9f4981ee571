"""Cross-field rules (rlhf_train/config/rules.py): one test per error and per warning rule.

Each test starts from a valid preset, breaks exactly what the rule is about, and checks the exact
set of keys reported, the offending value and the rule's wording; then it checks the boundary
case that passes.
"""

from __future__ import annotations

import copy

import pytest

from rlhf_train.config import validate_preset_dict
from rlhf_train.config.loader import LoadResult
from rlhf_train.config.rules import ERRORS, WARNINGS
from rlhf_train.config.topology import active_roles, workers


def with_(raw: dict, **sections: dict) -> dict:
    """A deep copy of `raw` with the given sections' keys set (`train={"max_steps": 3}`)."""
    out = copy.deepcopy(raw)
    for section, values in sections.items():
        out.setdefault(section, {}).update(values)
    return out


def validate(raw: dict) -> LoadResult:
    return validate_preset_dict(raw)


def error_keys(result: LoadResult) -> list[str]:
    return sorted(e.key for e in result.errors)


def warning_keys(result: LoadResult) -> list[str]:
    return sorted(w.key for w in result.warnings)


def only_error(result: LoadResult, key: str):
    """The single error, which must be at `key`."""
    assert error_keys(result) == [key], [e.render() for e in result.errors]
    return result.errors[0]


def assert_valid(raw: dict) -> LoadResult:
    result = validate(raw)
    assert result.errors == [], [e.render() for e in result.errors]
    assert result.preset is not None
    return result


def ray_cpu(**sections: dict) -> dict:
    """A valid ray preset on CPU: 4 actor workers, GRPO n=4, 16 samples per rollout."""
    raw = {
        "schema_version": 1,
        "run": {"name": "r"},
        "rollout": {"n_samples_per_prompt": 4},
        "algo": {"name": "grpo"},
        "train": {"rollout_batch_size": 4, "train_batch_size": 8, "micro_train_batch_size": 2},
        "placement": {"mode": "ray", "actor_workers": 4},
    }
    return with_(raw, **sections)


def ray_gpu(**sections: dict) -> dict:
    """A valid hybrid-engine preset on one 8-GPU node: 4 actors colocated with 2 vLLM engines × TP 2."""
    raw = ray_cpu(
        rollout={"engine": "vllm", "num_engines": 2, "tensor_parallel_size": 2},
        placement={"gpus_per_node": 8, "colocate": "all"},
    )
    return with_(raw, **sections)


def test_bases_are_valid(minimal_raw):
    for raw in (minimal_raw, ray_cpu(), ray_gpu()):
        result = assert_valid(raw)
        assert result.warnings == []


def test_the_rules_are_the_ones_tested_here():
    # a new rule needs its test in this file: add its name here when adding the test
    assert sorted(r.check.__name__ for r in ERRORS) == [
        "_colocate_all_counts", "_colocated_pairs_match", "_dual_clip_above_one", "_enough_gpus", "_eval_has_prompts",
        "_group_baselines_need_groups", "_hf_engine_has_no_tensor_parallelism",
        "_hf_engine_sleeps_only_in_its_own_process", "_local_mode_is_one_process",
        "_offload_between_phases_needs_deepspeed", "_offload_between_phases_needs_zero3", "_reward_source_complete",
        "_ring_fits", "_samples_divide_over_ranks", "_tensor_parallel_fits_a_node", "_vllm_engines_run_under_ray",
        "_whole_gradient_accumulation", "_whole_optimizer_steps_per_rollout"]
    assert sorted(r.check.__name__ for r in WARNINGS) == [
        "_critic_model_ignored", "_critic_unused", "_greedy_groups_are_identical", "_k1_in_loss_has_no_gradient",
        "_sleep_is_a_no_op_on_cpu", "_sleep_pays_only_when_colocated"]


# ---- batch arithmetic ------------------------------------------------------------------------

def test_samples_must_divide_over_actor_ranks():
    # 3 prompts × 2 samples = 6 samples over 4 ranks
    raw = ray_cpu(rollout={"n_samples_per_prompt": 2}, train={"rollout_batch_size": 3})
    result = validate(raw)
    # 6 samples cannot be a whole number of 8-sample optimizer steps either: the optimizer-step rule
    # always fires with this one (train_batch_size is a multiple of the ranks by the accumulation rule)
    assert error_keys(result) == ["[train].rollout_batch_size", "[train].train_batch_size"]
    by_key = {e.key: e for e in result.errors}
    err = by_key["[train].rollout_batch_size"]
    assert err.value == 3
    assert "3 × 2 = 6) must divide evenly over the actor's 4 data-parallel ranks" in err.rule
    assert "a multiple of 4" in err.fix
    assert_valid(ray_cpu(rollout={"n_samples_per_prompt": 2}, train={"rollout_batch_size": 4}))


def test_ring_attention_ranks_count_once_per_ring():
    # 8 workers in rings of 2 = 4 data-parallel ranks; 3 × 2 = 6 samples do not divide over 4
    ring = {"ring_attention": {"size": 2}}
    raw = ray_cpu(placement={"actor_workers": 8}, train={"rollout_batch_size": 3, "packing_samples": True},
                  rollout={"n_samples_per_prompt": 2}, **ring)
    result = validate(raw)
    assert error_keys(result) == ["[train].rollout_batch_size", "[train].train_batch_size"]
    err = next(e for e in result.errors if e.key == "[train].rollout_batch_size")
    assert "over the actor's 4 data-parallel ranks" in err.rule
    # 2 prompts × 4 samples = 8 samples over 4 ranks, train batch 8 = 2 micro × 4 ranks: valid
    good = ray_cpu(placement={"actor_workers": 8}, train={"rollout_batch_size": 2, "packing_samples": True},
                   **ring)
    assert_valid(good)
    # the same without the ring has 8 ranks: 8 is not a multiple of 2 micro × 8 ranks
    no_ring = with_(good, ring_attention={"size": 1})
    err = only_error(validate(no_ring), "[train].train_batch_size")
    assert "(2 × 8 = 16)" in err.rule


def test_whole_optimizer_steps_per_rollout(minimal_raw):
    # 4 prompts × 4 samples = 16 samples; 6 does not divide 16
    raw = with_(minimal_raw, train={"train_batch_size": 6})
    err = only_error(validate(raw), "[train].train_batch_size")
    assert err.value == 6
    assert "samples per rollout (16) must be a whole number of optimizer steps" in err.rule
    assert "(e.g. 4)" in err.fix
    assert_valid(with_(minimal_raw, train={"train_batch_size": 16}))


def test_gradient_accumulation_is_whole_for_the_actor(minimal_raw):
    raw = with_(minimal_raw, train={"micro_train_batch_size": 3})
    err = only_error(validate(raw), "[train].train_batch_size")
    assert err.value == 8
    assert "micro_train_batch_size × actor data-parallel ranks (3 × 1 = 3)" in err.rule
    assert_valid(with_(minimal_raw, train={"micro_train_batch_size": 4}))


def test_gradient_accumulation_is_whole_for_the_critic():
    # PPO: 2 actor ranks (2 × 2 = 4 divides 8) but 3 critic ranks (2 × 3 = 6 does not)
    raw = ray_cpu(algo={"name": "ppo"}, rollout={"n_samples_per_prompt": 1},
                  train={"rollout_batch_size": 8}, placement={"actor_workers": 2, "critic_workers": 3})
    err = only_error(validate(raw), "[train].train_batch_size")
    assert "critic data-parallel ranks (2 × 3 = 6)" in err.rule
    assert_valid(with_(raw, placement={"critic_workers": 4}))
    # without a critic (GRPO) the critic's workers do not matter
    assert_valid(with_(raw, algo={"name": "grpo"}, rollout={"n_samples_per_prompt": 2}))


# ---- algorithm -------------------------------------------------------------------------------

@pytest.mark.parametrize(("algo", "estimator"), [("grpo", "group_norm"), ("rloo", "rloo"),
                                                 ("reinforce_baseline", "reinforce_baseline")])
def test_group_estimators_need_two_samples(minimal_raw, algo, estimator):
    raw = with_(minimal_raw, algo={"name": algo}, rollout={"n_samples_per_prompt": 1},
                train={"train_batch_size": 4})
    err = only_error(validate(raw), "[rollout].n_samples_per_prompt")
    assert err.value == 1
    assert err.rule == f"advantage estimator {estimator} compares the samples of one prompt, so it needs at least 2."
    assert_valid(with_(raw, rollout={"n_samples_per_prompt": 2}, train={"train_batch_size": 8}))


def test_explicit_group_estimator_needs_two_samples_too(minimal_raw):
    raw = with_(minimal_raw, algo={"name": "reinforce_pp", "advantage_estimator": "rloo"},
                rollout={"n_samples_per_prompt": 1}, train={"train_batch_size": 4})
    err = only_error(validate(raw), "[rollout].n_samples_per_prompt")
    assert "advantage estimator rloo" in err.rule


def test_reinforce_is_fine_with_one_sample(minimal_raw):
    raw = with_(minimal_raw, algo={"name": "reinforce_pp"}, rollout={"n_samples_per_prompt": 1},
                train={"train_batch_size": 4})
    result = assert_valid(raw)
    assert result.preset.advantage_estimator == "reinforce"


@pytest.mark.parametrize("bad", [0.5, 1.0])
def test_dual_clip_must_exceed_one(minimal_raw, bad):
    err = only_error(validate(with_(minimal_raw, algo={"dual_clip": bad})), "[algo].dual_clip")
    assert err.value == bad
    assert err.rule == "dual-clip constant must be greater than 1 (or 0 for off)."


@pytest.mark.parametrize("good", [0.0, 1.01, 3.0])
def test_dual_clip_off_or_above_one_passes(minimal_raw, good):
    assert_valid(with_(minimal_raw, algo={"dual_clip": good}))


# ---- engines, sleep and offload --------------------------------------------------------------

def test_hf_engines_under_ray_are_their_own_role_and_may_be_several():
    raw = ray_cpu(rollout={"engine": "hf", "num_engines": 2})
    assert_valid(raw)
    preset = validate(raw).preset
    assert active_roles(preset) == ("actor", "reference", "engine")
    assert workers(preset, "engine") == 2
    local = with_(raw, placement={"mode": "local", "actor_workers": 1})
    err = only_error(validate(local), "[rollout].num_engines")
    assert err.rule == "mode = \"local\" runs one engine in-process."
    assert active_roles(validate(with_(local, rollout={"num_engines": 1})).preset) == ("actor", "reference")


def test_hf_engine_has_no_tensor_parallelism():
    raw = ray_cpu(rollout={"engine": "hf", "tensor_parallel_size": 2})
    err = only_error(validate(raw), "[rollout].tensor_parallel_size")
    assert err.value == 2
    assert err.rule == "tensor parallelism applies to vLLM engines only."
    assert_valid(with_(raw, rollout={"tensor_parallel_size": 1}))


def test_hf_engine_sleeps_only_in_its_own_process(minimal_raw):
    raw = with_(minimal_raw, rollout={"engine": "hf", "enable_sleep": True})
    err = only_error(validate(raw), "[rollout].enable_sleep")
    assert err.value is True
    assert err.rule == "in [placement].mode = \"local\" the hf engine is the actor's own module and cannot sleep."
    result = assert_valid(with_(raw, rollout={"engine": "vllm"}, placement={"mode": "ray"}))
    assert "[rollout].enable_sleep" in warning_keys(result)
    on_ray = assert_valid(ray_cpu(rollout={"enable_sleep": True}, placement={"colocate": "all"}))
    assert "[rollout].enable_sleep" not in warning_keys(on_ray)  # the hf engine really sleeps on CPU


def test_deepspeed_sleep_needs_zero3():
    raw = ray_cpu(deepspeed={"enable_sleep": True, "zero_stage": 2})
    err = only_error(validate(raw), "[deepspeed].enable_sleep")
    assert err.value is True
    assert "needs ZeRO-3 (zero_stage is 2)" in err.rule
    assert_valid(with_(raw, deepspeed={"zero_stage": 3}))


def test_deepspeed_sleep_needs_the_ray_placement(minimal_raw):
    raw = with_(minimal_raw, deepspeed={"enable_sleep": True, "zero_stage": 3})
    err = only_error(validate(raw), "[deepspeed].enable_sleep")
    assert err.rule == ("offloading DeepSpeed states between phases needs the DeepSpeed roles of "
                        "[placement].mode = \"ray\"; local mode trains with plain torch.")
    assert_valid(with_(raw, placement={"mode": "ray"}))


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_parameter_offload_needs_zero3(minimal_raw, stage):
    raw = with_(minimal_raw, deepspeed={"offload_params": True, "zero_stage": stage})
    err = only_error(validate(raw), "[deepspeed].offload_params")
    assert err.value is True
    assert err.rule == f"parameter offload needs ZeRO-3 (zero_stage is {stage})."
    assert_valid(with_(raw, deepspeed={"zero_stage": 3}))


# ---- placement -------------------------------------------------------------------------------

def test_colocate_all_needs_one_actor_per_engine_gpu():
    raw = ray_gpu(rollout={"num_engines": 1})
    err = only_error(validate(raw), "[placement].actor_workers")
    assert err.value == 4
    assert "actor_workers must equal num_engines × tensor_parallel_size (1 × 2 = 2)" in err.rule
    assert_valid(with_(raw, rollout={"num_engines": 2}))
    # the hf engine has no separate engines to match
    assert_valid(ray_cpu(placement={"colocate": "all"}))


def ppo_all_roles(**sections: dict) -> dict:
    """PPO with reference, critic and a reward model, all colocated on 4 GPUs of one node."""
    return with_(ray_gpu(algo={"name": "ppo"}, reward={"kind": "model", "model": "rm/"}), **sections)


@pytest.mark.parametrize(("key", "role"), [("ref_workers", "reference"), ("critic_workers", "critic"),
                                           ("reward_workers", "reward")])
def test_colocate_all_roles_match_the_actor(key, role):
    assert_valid(ppo_all_roles())
    raw = ppo_all_roles(placement={key: 2})
    err = only_error(validate(raw), f"[placement].{key}")
    assert err.value == 2
    assert err.rule == (f"colocate = \"all\" shares the actor's GPUs, so {role} workers must equal actor workers "
                        f"(4).")
    assert err.fix == f"set {key} = 0 (same as the actor)."
    assert_valid(ppo_all_roles(placement={key: 4}))


def test_colocate_all_ignores_roles_that_do_not_run():
    # no KL term → no reference; GRPO → no critic; builtin reward → no reward model
    assert_valid(ray_gpu(algo={"kl_coef": 0.0}, placement={"ref_workers": 2, "critic_workers": 2,
                                                           "reward_workers": 2}))


def test_colocate_actor_ref_workers_match():
    raw = ray_cpu(placement={"colocate": "actor_ref", "ref_workers": 2})
    err = only_error(validate(raw), "[placement].ref_workers")
    assert err.value == 2
    assert "colocate = \"actor_ref\" shares the actor's GPUs, so reference workers must equal actor workers (4)" \
        in err.rule
    assert_valid(with_(raw, placement={"ref_workers": 0}))
    # other roles are not paired with the actor here
    assert_valid(ray_cpu(algo={"name": "ppo"}, placement={"colocate": "actor_ref", "critic_workers": 2}))


def test_colocate_critic_reward_workers_match():
    raw = ray_cpu(algo={"name": "ppo"}, reward={"kind": "model", "model": "rm/"},
                  placement={"colocate": "critic_reward", "reward_workers": 2})
    err = only_error(validate(raw), "[placement].reward_workers")
    assert err.value == 2
    assert "reward workers (2) must equal critic workers (4)" in err.rule
    assert_valid(with_(raw, placement={"reward_workers": 0}))
    assert_valid(with_(raw, placement={"reward_workers": 4}))


def test_tensor_parallel_needs_gpus():
    raw = ray_cpu(placement={"actor_workers": 1}, rollout={"engine": "vllm", "tensor_parallel_size": 2})
    err = only_error(validate(raw), "[rollout].tensor_parallel_size")
    assert err.value == 2
    assert err.rule == "vLLM tensor parallelism needs GPUs ([placement].gpus_per_node is 0)."
    assert_valid(with_(raw, rollout={"tensor_parallel_size": 1}))


def test_tensor_parallel_fits_on_a_node():
    raw = ray_gpu(rollout={"num_engines": 1, "tensor_parallel_size": 4},
                  placement={"nodes": 2, "gpus_per_node": 2, "colocate": "none", "actor_workers": 1})
    err = only_error(validate(raw), "[rollout].tensor_parallel_size")
    assert err.value == 4
    assert "must sit on one node (2 GPUs per node)" in err.rule
    assert err.fix == "use at most 2."
    assert_valid(with_(raw, rollout={"tensor_parallel_size": 2}))


def test_not_enough_gpus_lists_each_role():
    # PPO without colocation: actor 2 + reference 2 + critic 2 + engine 1 × 2 = 8 GPUs on a 4-GPU node
    raw = ray_gpu(algo={"name": "ppo"}, rollout={"num_engines": 1},
                  placement={"gpus_per_node": 4, "colocate": "none", "actor_workers": 2})
    err = only_error(validate(raw), "[placement].gpus_per_node")
    assert err.value == 4
    assert err.rule == ("the roles need 8 GPUs (actor 2, reference 2, critic 2, engine 2; colocate = \"none\") "
                        "but 1 node(s) × 4 GPUs = 4.")
    assert_valid(with_(raw, placement={"gpus_per_node": 8}))
    assert_valid(with_(raw, placement={"nodes": 2}))


def test_engines_need_a_whole_node_each():
    # 2 actors on node0 leave 1 GPU there; engine 0 takes 2 of node1's 3 GPUs; engine 1 needs 2 on
    # one node and finds 1 left on each: 6 GPUs needed and 6 exist, but they are in the wrong places
    raw = ray_gpu(algo={"kl_coef": 0.0}, rollout={"num_engines": 2},
                  placement={"nodes": 2, "gpus_per_node": 3, "colocate": "none", "actor_workers": 2})
    err = only_error(validate(raw), "[rollout].tensor_parallel_size")
    assert err.value == 2
    assert "engine(s) [1] find no node with 2 free GPUs left" in err.rule
    assert_valid(with_(raw, placement={"gpus_per_node": 4}))
    assert_valid(with_(raw, rollout={"num_engines": 1}))


@pytest.mark.parametrize("key", ["actor_workers", "critic_workers", "ref_workers", "reward_workers", "nodes"])
def test_local_mode_runs_one_worker_per_role(minimal_raw, key):
    raw = with_(minimal_raw, placement={"mode": "local", key: 2})
    err = only_error(validate(raw), f"[placement].{key}")
    assert err.value == 2
    assert err.rule == "mode = \"local\" runs every role in one process, one worker each."
    assert_valid(with_(raw, placement={"mode": "ray"}))


def test_local_mode_runs_one_engine(minimal_raw):
    raw = with_(minimal_raw, rollout={"num_engines": 2})
    err = only_error(validate(raw), "[rollout].num_engines")
    assert err.rule == "mode = \"local\" runs one engine in-process."
    assert_valid(with_(raw, rollout={"num_engines": 1}))


def test_vllm_engines_need_ray(minimal_raw):
    raw = with_(minimal_raw, rollout={"engine": "vllm"})
    err = only_error(validate(raw), "[rollout].engine")
    assert err.rule.startswith("vLLM engines run in their own Ray actors")
    assert err.fix == "set [placement].mode = \"ray\", or engine = \"hf\"."
    assert_valid(with_(raw, placement={"mode": "ray"}))


def test_local_mode_has_no_ring(minimal_raw):
    raw = with_(minimal_raw, ring_attention={"size": 2}, train={"packing_samples": True})
    result = validate(raw)
    # the ring also fails to divide the single actor worker
    assert error_keys(result) == ["[ring_attention].size", "[ring_attention].size"]
    rules = sorted(e.rule for e in result.errors)
    assert rules == ["must divide the actor's 1 workers (each ring is 2 workers).",
                     "ring attention splits sequences over several processes; local mode has one."]


# ---- ring attention --------------------------------------------------------------------------

def ring(**sections: dict) -> dict:
    """4 actor workers in rings of 2 with packing: valid."""
    return with_(ray_cpu(ring_attention={"size": 2}, train={"packing_samples": True}), **sections)


def test_ring_base_is_valid():
    assert_valid(ring())


def test_ring_size_divides_actor_workers():
    raw = ring(ring_attention={"size": 3})
    err = only_error(validate(raw), "[ring_attention].size")
    assert err.value == 3
    assert err.rule == "must divide the actor's 4 workers (each ring is 3 workers)."
    assert_valid(ring(ring_attention={"size": 4}))


def test_ring_size_divides_critic_workers():
    raw = ring(algo={"name": "ppo"}, placement={"critic_workers": 6}, ring_attention={"size": 4},
               train={"train_batch_size": 16, "micro_train_batch_size": 1})
    err = only_error(validate(raw), "[ring_attention].size")
    assert err.rule == "must divide the critic's 6 workers (each ring is 4 workers)."
    assert "[placement].critic_workers" in err.fix
    assert_valid(with_(raw, placement={"critic_workers": 8}))


def test_ring_needs_packing():
    raw = ring(train={"packing_samples": False})
    err = only_error(validate(raw), "[train].packing_samples")
    assert err.value is False
    assert "it needs packing" in err.rule


def test_ring_needs_a_token_per_rank():
    raw = ring(ring_attention={"size": 4}, data={"max_prompt_len": 1}, rollout={"max_new_tokens": 2})
    err = only_error(validate(raw), "[ring_attention].size")
    assert err.value == 4
    assert err.rule == "a sequence of at most 3 tokens cannot give every one of 4 ranks a token."
    assert_valid(with_(raw, rollout={"max_new_tokens": 3}))


def test_flash_ring_needs_cuda():
    raw = ring(ring_attention={"backend": "flash"})
    err = only_error(validate(raw), "[ring_attention].backend")
    assert err.value == "flash"
    assert err.rule == "the ring-flash-attn backend needs CUDA."
    assert_valid(ring(ring_attention={"backend": "torch"}))
    assert_valid(ring(ring_attention={"backend": "flash"}, placement={"gpus_per_node": 9}))


# ---- rewards ---------------------------------------------------------------------------------

def test_builtin_reward_needs_builtin_prompts(minimal_raw):
    raw = with_(minimal_raw, data={"prompt_data": "prompts.jsonl"}, reward={"kind": "builtin"})
    err = only_error(validate(raw), "[reward].kind")
    assert err.value == "builtin"
    assert "the built-in verifier scores the built-in tasks only; prompts come from prompts.jsonl." == err.rule
    assert_valid(with_(raw, data={"prompt_data": "builtin:arith"}))


def test_model_reward_needs_a_path(minimal_raw):
    raw = with_(minimal_raw, reward={"kind": "model"})
    err = only_error(validate(raw), "[reward].model")
    assert err.value == ""
    assert err.rule == "kind = \"model\" needs a reward model path."
    assert_valid(with_(raw, reward={"model": "models/rm"}))


def test_remote_reward_needs_a_url(minimal_raw):
    raw = with_(minimal_raw, reward={"kind": "remote"})
    err = only_error(validate(raw), "[reward].urls")
    assert err.value == []
    assert err.rule == "kind = \"remote\" needs at least one URL."


def test_remote_reward_urls_are_http(minimal_raw):
    raw = with_(minimal_raw, reward={"kind": "remote", "urls": ["http://a:5000/r", "ftp://b/r", "c:1"]})
    result = validate(raw)
    assert error_keys(result) == ["[reward].urls", "[reward].urls"]
    assert sorted(e.value for e in result.errors) == ["c:1", "ftp://b/r"]
    assert all(e.rule == "each URL must start with http:// or https://." for e in result.errors)
    assert_valid(with_(raw, reward={"urls": ["http://a:5000/r", "https://b/r"]}))
    assert_valid(with_(raw, reward={"urls": "https://b/r"}))


@pytest.mark.parametrize("spec", ["", "score", "rewards/r.py", "rewards/r.py:", "r.py:1score", "r.txt:score"])
def test_function_reward_needs_file_and_name(minimal_raw, spec):
    raw = with_(minimal_raw, reward={"kind": "function", "function": spec})
    err = only_error(validate(raw), "[reward].function")
    assert err.value == spec
    assert err.rule == "kind = \"function\" needs `path/to/file.py:function_name`."


@pytest.mark.parametrize("spec", ["r.py:score", "rewards/my_reward.py:_score2"])
def test_function_reward_spec_passes(minimal_raw, spec):
    assert_valid(with_(minimal_raw, reward={"kind": "function", "function": spec}))


def test_eval_needs_prompts_when_data_is_a_file(minimal_raw):
    raw = with_(minimal_raw, data={"prompt_data": "prompts.jsonl"}, reward={"kind": "function", "function": "r.py:f"},
                eval={"every_steps": 5})
    err = only_error(validate(raw), "[eval].prompt_data")
    assert err.value == ""
    assert "a held-out split exists only for the built-in tasks" in err.rule
    assert_valid(with_(raw, eval={"prompt_data": "eval.jsonl"}))
    assert_valid(with_(raw, eval={"every_steps": 0}))
    assert_valid(with_(minimal_raw, eval={"every_steps": 5}))  # builtin:arith has a held-out split


# ---- warnings --------------------------------------------------------------------------------

def only_warning(result: LoadResult, key: str):
    assert result.errors == [], [e.render() for e in result.errors]
    assert warning_keys(result) == [key], [w.render() for w in result.warnings]
    return result.warnings[0]


def test_k1_in_the_loss_warns(minimal_raw):
    raw = with_(minimal_raw, algo={"use_kl_loss": True, "kl_estimator": "k1", "kl_coef": 0.01})
    warning = only_warning(validate(raw), "[algo].kl_estimator")
    assert warning.value == "k1"
    assert "k1 used as a loss has zero expected gradient" in warning.rule
    for fine in ({"kl_estimator": "k3"}, {"use_kl_loss": False}, {"kl_coef": 0.0}):
        assert validate(with_(raw, algo=fine)).warnings == []


def test_ppo_with_a_critic_free_estimator_warns(minimal_raw):
    raw = with_(minimal_raw, algo={"name": "ppo", "advantage_estimator": "reinforce"})
    warning = only_warning(validate(raw), "[algo].advantage_estimator")
    assert warning.value == "reinforce"
    assert warning.rule == "algorithm ppo with a critic-free estimator: no critic is trained."
    assert validate(with_(raw, algo={"advantage_estimator": "gae"})).warnings == []
    assert validate(with_(raw, algo={"advantage_estimator": "auto"})).warnings == []


def test_critic_model_without_a_critic_warns(minimal_raw):
    raw = with_(minimal_raw, model={"critic": "models/critic"})
    warning = only_warning(validate(raw), "[model].critic")
    assert warning.value == "models/critic"
    assert warning.rule == "advantage estimator group_norm has no critic; this model is not used."
    assert validate(with_(raw, algo={"name": "ppo"}, rollout={"n_samples_per_prompt": 1},
                          train={"train_batch_size": 4})).warnings == []


def test_greedy_with_several_samples_warns(minimal_raw):
    raw = with_(minimal_raw, rollout={"temperature": 0.0})
    warning = only_warning(validate(raw), "[rollout].temperature")
    assert warning.value == 0.0
    assert warning.rule == "greedy decoding makes all samples of a prompt identical."
    assert validate(with_(raw, algo={"name": "reinforce_pp"}, rollout={"n_samples_per_prompt": 1},
                          train={"train_batch_size": 4})).warnings == []
    assert validate(with_(raw, rollout={"temperature": 0.1})).warnings == []


def test_sleep_without_colocate_all_warns():
    raw = ray_gpu(rollout={"enable_sleep": True}, placement={"colocate": "none", "gpus_per_node": 8},
                  algo={"kl_coef": 0.0})
    warning = only_warning(validate(raw), "[rollout].enable_sleep")
    assert warning.value is True
    assert warning.rule == "sleeping engines only frees memory for models that share their GPUs."
    assert validate(with_(raw, placement={"colocate": "all"})).warnings == []


def test_sleep_on_cpu_warns(minimal_raw):
    raw = with_(minimal_raw, rollout={"engine": "vllm", "enable_sleep": True},
                placement={"mode": "ray", "colocate": "all"})
    warning = only_warning(validate(raw), "[rollout].enable_sleep")
    assert warning.rule == "vLLM on CPU cannot sleep; engines stay loaded (the state machine still runs)."
    # without colocation both sleep warnings apply
    both = validate(with_(raw, placement={"colocate": "none"}))
    assert warning_keys(both) == ["[rollout].enable_sleep", "[rollout].enable_sleep"]


def test_warnings_do_not_stop_a_preset(minimal_raw):
    raw = with_(minimal_raw, rollout={"temperature": 0.0}, model={"critic": "c"})
    result = validate(raw)
    assert result.ok and result.preset is not None
    assert warning_keys(result) == ["[model].critic", "[rollout].temperature"]


# ---- all at once -----------------------------------------------------------------------------

def test_independent_mistakes_are_all_reported(minimal_raw):
    raw = with_(
        minimal_raw,
        train={"train_batch_size": 6},                         # 16 samples / 6
        algo={"dual_clip": 0.5},                               # dual clip ≤ 1
        deepspeed={"offload_params": True, "zero_stage": 2},   # needs ZeRO-3
        rollout={"enable_sleep": True},                        # hf engine cannot sleep
        placement={"nodes": 2},                                # local mode is one process
        reward={"kind": "function", "function": "score"},      # needs file.py:name
        ring_attention={"backend": "flash"},                   # ring off: backend not checked
    )
    result = validate(raw)
    assert error_keys(result) == ["[algo].dual_clip", "[deepspeed].offload_params", "[placement].nodes",
                                  "[reward].function", "[rollout].enable_sleep", "[train].train_batch_size"]
    assert result.preset is None
    # with a schema error in [algo] as well, the other sections' rules still report
    raw["algo"]["kl_coef"] = "big"
    # (rules that read [algo] do not run on it, so dual_clip is not judged)
    assert error_keys(validate(raw)) == ["[algo].kl_coef", "[deepspeed].offload_params", "[placement].nodes",
                                         "[reward].function", "[rollout].enable_sleep",
                                         "[train].train_batch_size"]
