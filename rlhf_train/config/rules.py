"""Cross-field rules, checked at load so that a wrong combination fails in one second, not in a
worker ten minutes later.

Each rule names the sections it reads; a rule runs only when all of them parsed, so a type error
in one section never hides (or fakes) an error elsewhere. Rules yield `PresetIssue`s; `WARNINGS`
are advice that does not stop a run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rlhf_train.config.issues import PresetIssue, key_name
from rlhf_train.config.schema import ADVANTAGE_FOR_ALGO, GROUP_ESTIMATORS, Preset
from rlhf_train.config.topology import active_roles, data_parallel_size, plan_placement, workers

Check = Callable[[Preset], Iterator[PresetIssue]]


@dataclass(frozen=True)
class Rule:
    sections: frozenset[str]
    check: Check


ERRORS: list[Rule] = []
WARNINGS: list[Rule] = []


def _register(target: list[Rule], sections: tuple[str, ...]) -> Callable[[Check], Check]:
    def add(check: Check) -> Check:
        target.append(Rule(frozenset(sections), check))
        return check

    return add


def error_rule(*sections: str) -> Callable[[Check], Check]:
    return _register(ERRORS, sections)


def warning_rule(*sections: str) -> Callable[[Check], Check]:
    return _register(WARNINGS, sections)


def run_rules(preset: Preset, parsed: set[str]) -> tuple[list[PresetIssue], list[PresetIssue]]:
    """Errors and warnings of every rule whose sections all parsed."""
    def collect(rules: list[Rule]) -> list[PresetIssue]:
        return [issue for rule in rules if rule.sections <= parsed for issue in rule.check(preset)]

    return collect(ERRORS), collect(WARNINGS)


# ---- batch arithmetic ------------------------------------------------------------------------

@error_rule("train", "rollout", "placement", "ring_attention")
def _samples_divide_over_ranks(p: Preset) -> Iterator[PresetIssue]:
    dp = data_parallel_size(p)
    samples = p.train.rollout_batch_size * p.rollout.n_samples_per_prompt
    if samples % dp:
        yield PresetIssue(
            key_name("train", "rollout_batch_size"), value=p.train.rollout_batch_size,
            rule=f"samples per rollout (rollout_batch_size × n_samples_per_prompt = {p.train.rollout_batch_size} × "
                 f"{p.rollout.n_samples_per_prompt} = {samples}) must divide evenly over the actor's {dp} "
                 f"data-parallel ranks.",
            fix=f"make rollout_batch_size × n_samples_per_prompt a multiple of {dp}.")


@error_rule("train", "rollout")
def _whole_optimizer_steps_per_rollout(p: Preset) -> Iterator[PresetIssue]:
    samples = p.train.rollout_batch_size * p.rollout.n_samples_per_prompt
    if samples % p.train.train_batch_size:
        yield PresetIssue(
            key_name("train", "train_batch_size"), value=p.train.train_batch_size,
            rule=f"samples per rollout ({samples}) must be a whole number of optimizer steps of train_batch_size "
                 f"samples.",
            fix=f"use a train_batch_size that divides {samples} (e.g. {_largest_divisor_at_most(samples, p.train.train_batch_size)}).")


@error_rule("train", "placement", "ring_attention", "algo")
def _whole_gradient_accumulation(p: Preset) -> Iterator[PresetIssue]:
    for role in ("actor", "critic") if p.uses_critic else ("actor",):
        dp = data_parallel_size(p, role)
        per_step = p.train.micro_train_batch_size * dp
        if p.train.train_batch_size % per_step:
            yield PresetIssue(
                key_name("train", "train_batch_size"), value=p.train.train_batch_size,
                rule=f"must be a multiple of micro_train_batch_size × {role} data-parallel ranks "
                     f"({p.train.micro_train_batch_size} × {dp} = {per_step}) so that gradient accumulation is a "
                     f"whole number of micro-batches.",
                fix=f"use a multiple of {per_step}, or change micro_train_batch_size.")


def _largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor d ≤ limit of n: searched downwards from the limit and, as n / k, upwards from
    k = ⌈n / limit⌉ — 10⁵ candidates each way (exact for all but huge n), else gcd(n, limit)."""
    top = min(n, limit)
    down = next((d for d in range(top, max(0, top - 100_000), -1) if n % d == 0), 1)
    first_k = -(-n // top)
    up = next((n // k for k in range(first_k, first_k + 100_000) if n % k == 0), 1)
    return max(down, up, math.gcd(n, limit))


# ---- algorithm -------------------------------------------------------------------------------

@error_rule("algo", "rollout")
def _group_baselines_need_groups(p: Preset) -> Iterator[PresetIssue]:
    estimator = p.advantage_estimator
    if estimator in GROUP_ESTIMATORS and p.rollout.n_samples_per_prompt < 2:
        yield PresetIssue(
            key_name("rollout", "n_samples_per_prompt"), value=p.rollout.n_samples_per_prompt,
            rule=f"advantage estimator {estimator} compares the samples of one prompt, so it needs at least 2.",
            fix="set n_samples_per_prompt to 2 or more (4–16 is usual).")


@error_rule("algo")
def _dual_clip_above_one(p: Preset) -> Iterator[PresetIssue]:
    if 0 < p.algo.dual_clip <= 1:
        yield PresetIssue(key_name("algo", "dual_clip"), value=p.algo.dual_clip,
                          rule="dual-clip constant must be greater than 1 (or 0 for off).", fix="use e.g. 3.0.")


@warning_rule("algo")
def _k1_in_loss_has_no_gradient(p: Preset) -> Iterator[PresetIssue]:
    if p.algo.use_kl_loss and p.algo.kl_estimator == "k1" and p.algo.kl_coef > 0:
        yield PresetIssue(key_name("algo", "kl_estimator"), value="k1",
                          rule="k1 used as a loss has zero expected gradient: the KL term will not pull the policy "
                               "back.", fix="use k2 (reverse-KL gradient) or k3 in the loss, or use_kl_loss = false.")


@warning_rule("algo")
def _critic_unused(p: Preset) -> Iterator[PresetIssue]:
    if p.algo.name == "ppo" and not p.uses_critic:
        yield PresetIssue(key_name("algo", "advantage_estimator"), value=p.algo.advantage_estimator,
                          rule="algorithm ppo with a critic-free estimator: no critic is trained.",
                          fix=f"use advantage_estimator = \"{ADVANTAGE_FOR_ALGO['ppo']}\" or \"auto\" for PPO.")


@warning_rule("algo", "model")
def _critic_model_ignored(p: Preset) -> Iterator[PresetIssue]:
    if p.model.critic and not p.uses_critic:
        yield PresetIssue(key_name("model", "critic"), value=p.model.critic,
                          rule=f"advantage estimator {p.advantage_estimator} has no critic; this model is not used.")


@warning_rule("rollout")
def _greedy_groups_are_identical(p: Preset) -> Iterator[PresetIssue]:
    if p.rollout.temperature == 0 and p.rollout.n_samples_per_prompt > 1:
        yield PresetIssue(key_name("rollout", "temperature"), value=0.0,
                          rule="greedy decoding makes all samples of a prompt identical.",
                          fix="sample (temperature around 1.0) when n_samples_per_prompt > 1.")


# ---- engines, sleep and offload --------------------------------------------------------------

@error_rule("rollout", "placement")
def _hf_engine_sleeps_only_in_its_own_process(p: Preset) -> Iterator[PresetIssue]:
    if p.rollout.enable_sleep and p.rollout.engine == "hf" and p.placement.mode == "local":
        yield PresetIssue(key_name("rollout", "enable_sleep"), value=True,
                          rule="in [placement].mode = \"local\" the hf engine is the actor's own module and "
                               "cannot sleep.",
                          fix="set [placement].mode = \"ray\" (the engine in its own process), or "
                              "enable_sleep = false.")


@error_rule("rollout")
def _hf_engine_has_no_tensor_parallelism(p: Preset) -> Iterator[PresetIssue]:
    if p.rollout.engine == "hf" and p.rollout.tensor_parallel_size != 1:
        yield PresetIssue(key_name("rollout", "tensor_parallel_size"), value=p.rollout.tensor_parallel_size,
                          rule="tensor parallelism applies to vLLM engines only.",
                          fix="set tensor_parallel_size = 1, or engine = \"vllm\".")


@error_rule("rollout", "placement")
def _vllm_engines_run_under_ray(p: Preset) -> Iterator[PresetIssue]:
    if p.rollout.engine == "vllm" and p.placement.mode == "local":
        yield PresetIssue(key_name("rollout", "engine"), value="vllm",
                          rule="vLLM engines run in their own Ray actors; the local placement generates with "
                               "the actor's own module (the hf engine).",
                          fix="set [placement].mode = \"ray\", or engine = \"hf\".")


@error_rule("deepspeed")
def _offload_between_phases_needs_deepspeed(p: Preset) -> Iterator[PresetIssue]:
    if p.deepspeed.enable_sleep and p.placement.mode == "local":
        yield PresetIssue(key_name("deepspeed", "enable_sleep"), value=True,
                          rule="offloading DeepSpeed states between phases needs the DeepSpeed roles of "
                               "[placement].mode = \"ray\"; local mode trains with plain torch.",
                          fix="set [placement].mode = \"ray\", or enable_sleep = false.")


@error_rule("deepspeed")
def _offload_between_phases_needs_zero3(p: Preset) -> Iterator[PresetIssue]:
    ds = p.deepspeed
    if ds.enable_sleep and ds.zero_stage != 3:
        yield PresetIssue(key_name("deepspeed", "enable_sleep"), value=True,
                          rule=f"offloading DeepSpeed states between phases needs ZeRO-3 (zero_stage is {ds.zero_stage}).",
                          fix="set [deepspeed].zero_stage = 3, or enable_sleep = false.")
    if ds.offload_params and ds.zero_stage != 3:
        yield PresetIssue(key_name("deepspeed", "offload_params"), value=True,
                          rule=f"parameter offload needs ZeRO-3 (zero_stage is {ds.zero_stage}).",
                          fix="set [deepspeed].zero_stage = 3, or offload_params = false.")


@warning_rule("rollout", "placement")
def _sleep_pays_only_when_colocated(p: Preset) -> Iterator[PresetIssue]:
    if p.rollout.enable_sleep and p.placement.colocate != "all":
        yield PresetIssue(key_name("rollout", "enable_sleep"), value=True,
                          rule="sleeping engines only frees memory for models that share their GPUs.",
                          fix="use [placement].colocate = \"all\" (the hybrid engine), or enable_sleep = false.")


@warning_rule("rollout", "placement")
def _sleep_is_a_no_op_on_cpu(p: Preset) -> Iterator[PresetIssue]:
    if p.rollout.enable_sleep and p.rollout.engine == "vllm" and p.placement.gpus_per_node == 0:
        yield PresetIssue(key_name("rollout", "enable_sleep"), value=True,
                          rule="vLLM on CPU cannot sleep; engines stay loaded (the state machine still runs).")


# ---- placement -------------------------------------------------------------------------------

@error_rule("placement", "rollout", "algo", "reward")
def _colocate_all_counts(p: Preset) -> Iterator[PresetIssue]:
    if p.placement.colocate != "all":
        return
    actor = p.placement.actor_workers
    if p.rollout.engine == "vllm" and actor != workers(p, "engine"):
        yield PresetIssue(
            key_name("placement", "actor_workers"), value=actor,
            rule=f"colocate = \"all\" puts every engine GPU on an actor GPU, so actor_workers must equal "
                 f"num_engines × tensor_parallel_size ({p.rollout.num_engines} × {p.rollout.tensor_parallel_size} "
                 f"= {workers(p, 'engine')}).",
            fix="change actor_workers, num_engines or tensor_parallel_size so that they match.")
    yield from _same_workers_as(p, "actor", "all")


@error_rule("placement", "algo", "reward")
def _colocated_pairs_match(p: Preset) -> Iterator[PresetIssue]:
    if p.placement.colocate == "actor_ref":
        yield from _same_workers_as(p, "actor", "actor_ref", only=("reference",))
    if p.placement.colocate == "critic_reward":
        roles = active_roles(p)
        if "critic" in roles and "reward" in roles and workers(p, "critic") != workers(p, "reward"):
            yield PresetIssue(key_name("placement", "reward_workers"), value=p.placement.reward_workers,
                              rule=f"colocate = \"critic_reward\" shares GPUs, so reward workers ({workers(p, 'reward')})"
                                   f" must equal critic workers ({workers(p, 'critic')}).",
                              fix="set reward_workers = 0 (same as the critic) or equal to critic_workers.")


def _same_workers_as(p: Preset, base: str, mode: str, only: tuple[str, ...] = ("reference", "critic", "reward")
                     ) -> Iterator[PresetIssue]:
    keys = {"reference": "ref_workers", "critic": "critic_workers", "reward": "reward_workers"}
    for role in only:
        if role in active_roles(p) and workers(p, role) != workers(p, base):
            key = keys[role]
            yield PresetIssue(key_name("placement", key), value=getattr(p.placement, key),
                              rule=f"colocate = \"{mode}\" shares the actor's GPUs, so {role} workers must equal actor "
                                   f"workers ({workers(p, base)}).",
                              fix=f"set {key} = 0 (same as the actor).")


@error_rule("placement", "rollout")
def _tensor_parallel_fits_a_node(p: Preset) -> Iterator[PresetIssue]:
    tp = p.rollout.tensor_parallel_size
    if p.rollout.engine != "vllm" or tp == 1:
        return
    if p.placement.gpus_per_node == 0:
        yield PresetIssue(key_name("rollout", "tensor_parallel_size"), value=tp,
                          rule="vLLM tensor parallelism needs GPUs ([placement].gpus_per_node is 0).",
                          fix="set tensor_parallel_size = 1 on CPU.")
    elif tp > p.placement.gpus_per_node:
        yield PresetIssue(key_name("rollout", "tensor_parallel_size"), value=tp,
                          rule=f"an engine's tensor-parallel GPUs must sit on one node ({p.placement.gpus_per_node} "
                               f"GPUs per node).", fix=f"use at most {p.placement.gpus_per_node}.")


@error_rule("placement", "rollout", "algo", "reward")
def _enough_gpus(p: Preset) -> Iterator[PresetIssue]:
    if p.placement.gpus_per_node == 0 or p.rollout.tensor_parallel_size > p.placement.gpus_per_node:
        return
    plan = plan_placement(p)
    if plan.gpus_needed > plan.gpus_available:
        per_role = ", ".join(f"{r} {len(s)}" for r, s in plan.slots.items())
        yield PresetIssue(
            key_name("placement", "gpus_per_node"), value=p.placement.gpus_per_node,
            rule=f"the roles need {plan.gpus_needed} GPUs ({per_role}; colocate = \"{p.placement.colocate}\") but "
                 f"{p.placement.nodes} node(s) × {p.placement.gpus_per_node} GPUs = {plan.gpus_available}.",
            fix="add nodes or GPUs, lower worker counts, or colocate roles ([placement].colocate).")
    elif plan.split_engines:
        yield PresetIssue(
            key_name("rollout", "tensor_parallel_size"), value=p.rollout.tensor_parallel_size,
            rule=f"engine(s) {plan.split_engines} find no node with {p.rollout.tensor_parallel_size} free GPUs "
                 f"left (an engine's tensor-parallel GPUs must all sit on one node).",
            fix="choose worker counts that leave whole tensor-parallel groups free on a node.")


@error_rule("placement", "rollout", "ring_attention")
def _local_mode_is_one_process(p: Preset) -> Iterator[PresetIssue]:
    pl = p.placement
    if pl.mode != "local":
        return
    many = {"actor_workers": pl.actor_workers, "critic_workers": pl.critic_workers, "ref_workers": pl.ref_workers,
            "reward_workers": pl.reward_workers, "nodes": pl.nodes}
    for key, value in many.items():
        if value > 1:
            yield PresetIssue(key_name("placement", key), value=value,
                              rule="mode = \"local\" runs every role in one process, one worker each.",
                              fix="set mode = \"ray\" for more workers, or set this to 1.")
    if p.rollout.num_engines > 1:
        yield PresetIssue(key_name("rollout", "num_engines"), value=p.rollout.num_engines,
                          rule="mode = \"local\" runs one engine in-process.",
                          fix="set [placement].mode = \"ray\" for several engines.")
    if p.ring_attention.size > 1:
        yield PresetIssue(key_name("ring_attention", "size"), value=p.ring_attention.size,
                          rule="ring attention splits sequences over several processes; local mode has one.",
                          fix="set [placement].mode = \"ray\".")


# ---- ring attention --------------------------------------------------------------------------

@error_rule("ring_attention", "placement", "algo", "train", "data", "rollout")
def _ring_fits(p: Preset) -> Iterator[PresetIssue]:
    size = p.ring_attention.size
    if size == 1:
        return
    # the reference counts apart only when it has its own worker count (else it is the actor's)
    own = {"reference": p.placement.ref_workers > 0, "critic": p.uses_critic}
    for role in ["actor"] + [r for r in ("reference", "critic") if own[r] and r in active_roles(p)]:
        if workers(p, role) % size:
            yield PresetIssue(key_name("ring_attention", "size"), value=size,
                              rule=f"must divide the {role}'s {workers(p, role)} workers (each ring is {size} workers).",
                              fix=f"use a divisor of {workers(p, role)}, or change [placement].{role}_workers.")
    if not p.train.packing_samples:
        yield PresetIssue(key_name("train", "packing_samples"), value=False,
                          rule="ring attention splits packed sequences; it needs packing.",
                          fix="set [train].packing_samples = true.")
    longest = p.data.max_prompt_len + p.rollout.max_new_tokens
    if longest < size:
        yield PresetIssue(key_name("ring_attention", "size"), value=size,
                          rule=f"a sequence of at most {longest} tokens cannot give every one of {size} ranks a "
                               f"token.", fix="use a smaller ring or longer sequences.")
    if p.ring_attention.backend == "flash" and p.placement.gpus_per_node == 0:
        yield PresetIssue(key_name("ring_attention", "backend"), value="flash",
                          rule="the ring-flash-attn backend needs CUDA.", fix="use backend = \"auto\" or \"torch\".")


# ---- rewards and data ------------------------------------------------------------------------

FUNCTION_SPEC = re.compile(r"^.+\.py:[A-Za-z_][A-Za-z0-9_]*$")


@error_rule("reward", "data")
def _reward_source_complete(p: Preset) -> Iterator[PresetIssue]:
    r = p.reward
    if r.kind == "builtin" and not p.data.prompt_data.startswith("builtin:"):
        yield PresetIssue(key_name("reward", "kind"), value="builtin",
                          rule="the built-in verifier scores the built-in tasks only; prompts come from "
                               f"{p.data.prompt_data}.",
                          fix="use [data].prompt_data = \"builtin:arith\", or another [reward].kind.")
    if r.kind == "model" and not r.model:
        yield PresetIssue(key_name("reward", "model"), value="", rule="kind = \"model\" needs a reward model path.",
                          fix="set [reward].model to a local HF directory.")
    if r.kind == "remote":
        if not r.urls:
            yield PresetIssue(key_name("reward", "urls"), value=[], rule="kind = \"remote\" needs at least one URL.",
                              fix="set urls = \"http://host:port/get_reward\" (a string or a list).")
        for url in r.urls:
            if not url.startswith(("http://", "https://")):
                yield PresetIssue(key_name("reward", "urls"), value=url, rule="each URL must start with http:// or "
                                                                             "https://.")
    if r.kind == "function" and not FUNCTION_SPEC.match(r.function):
        yield PresetIssue(key_name("reward", "function"), value=r.function,
                          rule="kind = \"function\" needs `path/to/file.py:function_name`.",
                          fix="e.g. function = \"rewards/my_reward.py:score\".")


@error_rule("eval", "data")
def _eval_has_prompts(p: Preset) -> Iterator[PresetIssue]:
    if p.eval.every_steps and not p.eval.prompt_data and not p.data.prompt_data.startswith("builtin:"):
        yield PresetIssue(key_name("eval", "prompt_data"), value="",
                          rule=f"eval needs prompts: a held-out split exists only for the built-in tasks, and "
                               f"[data].prompt_data = {p.data.prompt_data} is a file.",
                          fix="set [eval].prompt_data to a prompt file, or every_steps = 0.")

