"""Assemble a `local` run: load the models, the prompts and the reward, wire the roles into a
`Trainer`. Everything lives in this process (the debugging placement)."""

from __future__ import annotations

import copy

import torch
from transformers.utils import logging as transformers_logging

from rlhf_train.config.batch import plan_batches, rl_steps
from rlhf_train.config.schema import Preset
from rlhf_train.data.prompts import load_prompts
from rlhf_train.errors import RunError
from rlhf_train.models.actor import Actor
from rlhf_train.models.critic import Critic
from rlhf_train.models.loading import load_model_and_tokenizer
from rlhf_train.rewards.source import make_reward_source
from rlhf_train.roles import ActorRole, CriticRole, ReferenceRole
from rlhf_train.rollout.hf_engine import HFEngine
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir
from rlhf_train.trainer import Roles, Trainer


def build_local_run(preset: Preset, run_dir: RunDir, emitter: Emitter) -> Trainer:
    transformers_logging.disable_progress_bar()  # our progress bar is the one on the terminal
    torch.manual_seed(preset.run.seed)
    m, d = preset.model, preset.data
    model, tokenizer = load_model_and_tokenizer(m.actor, dtype=m.dtype, seed=preset.run.seed, for_role="actor")
    if d.apply_chat_template and not getattr(tokenizer, "chat_template", None):
        raise RunError(f"[data].apply_chat_template = true but the tokenizer of {m.actor} has no chat template; "
                       "set apply_chat_template = false")
    prompts = load_prompts(d.prompt_data, input_key=d.input_key, label_key=d.label_key or None,
                           max_samples=d.max_samples, seed=preset.run.seed)
    total_steps = rl_steps(preset, len(prompts))
    if len(prompts) < preset.train.rollout_batch_size:
        raise RunError(f"{d.prompt_data} has {len(prompts)} prompts, fewer than one rollout batch "
                       f"([train].rollout_batch_size = {preset.train.rollout_batch_size}); lower it or add prompts")
    optimizer_steps = total_steps * plan_batches(preset, len(prompts)).optimizer_steps_per_rollout

    actor = Actor(model)
    reference = None
    if preset.algo.kl_coef > 0:
        ref_model = copy.deepcopy(model) if not m.reference else load_model_and_tokenizer(
            m.reference, dtype=m.dtype, seed=preset.run.seed, for_role="reference")[0]
        reference = ReferenceRole(Actor(ref_model), preset)
    critic = None
    if preset.uses_critic:
        critic_model, _ = Critic.from_spec(m.critic or m.actor, dtype=m.dtype, seed=preset.run.seed)
        critic = CriticRole(critic_model, preset, optimizer_steps)
    eos_ids = {tokenizer.eos_token_id}
    engine = HFEngine(model, pad_id=tokenizer.pad_token_id, eos_ids=eos_ids,
                      max_batch_samples=max(preset.train.micro_rollout_batch_size, preset.rollout.n_samples_per_prompt),
                      shared=True)
    roles = Roles(actor=ActorRole(actor, preset, optimizer_steps), reference=reference, critic=critic,
                  reward=make_reward_source(preset), engine=engine, tokenizer=tokenizer)
    parameters = sum(p.numel() for p in model.parameters())
    emitter.emit("log", level="info", message=f"loaded {m.actor} ({parameters:,} parameters) and {len(prompts)} prompts;"
                 f" {total_steps} steps", parameters=parameters, prompts=len(prompts), total_steps=total_steps)
    return Trainer(preset, roles, prompts, total_steps, emitter.emit, run_dir.checkpoints)
