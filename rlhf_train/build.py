"""Assemble a `local` run: load the models, the prompts and the reward, wire the roles into a
`Trainer`. Everything lives in this process (the debugging placement). The pieces every placement
shares (prompts and step counts, the "loaded" event, the HF engine) are here too."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers.utils import logging as transformers_logging

from rlhf_train.config.batch import plan_batches, rl_steps
from rlhf_train.config.schema import Preset
from rlhf_train.data.prompts import PromptRecord, load_prompts
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


@dataclass(frozen=True)
class RunData:
    """The prompts of a run and the step counts they give."""

    prompts: list[PromptRecord]
    total_steps: int
    optimizer_steps: int


def load_run_data(preset: Preset, tokenizer) -> RunData:
    """Check the tokenizer fits the preset, load the prompts and count the steps (any placement)."""
    m, d = preset.model, preset.data
    if d.apply_chat_template and not getattr(tokenizer, "chat_template", None):
        raise RunError(f"[data].apply_chat_template = true but the tokenizer of {m.actor} has no chat template; "
                       "set apply_chat_template = false")
    prompts = load_prompts(d.prompt_data, input_key=d.input_key, label_key=d.label_key or None,
                           max_samples=d.max_samples, seed=preset.run.seed)
    if len(prompts) < preset.train.rollout_batch_size:
        raise RunError(f"{d.prompt_data} has {len(prompts)} prompts, fewer than one rollout batch "
                       f"([train].rollout_batch_size = {preset.train.rollout_batch_size}); lower it or add prompts")
    total_steps = rl_steps(preset, len(prompts))
    optimizer_steps = total_steps * plan_batches(preset, len(prompts)).optimizer_steps_per_rollout
    return RunData(prompts=prompts, total_steps=total_steps, optimizer_steps=optimizer_steps)


def emit_loaded(emitter: Emitter, preset: Preset, parameters: int, data: RunData) -> None:
    """The "loaded" log event: models and prompts are in place, training starts."""
    emitter.emit("log", level="info", message=f"loaded {preset.model.actor} ({parameters:,} parameters) and "
                 f"{len(data.prompts)} prompts; {data.total_steps} steps", parameters=parameters,
                 prompts=len(data.prompts), total_steps=data.total_steps)


def hf_engine(model, tokenizer, preset: Preset, shared: bool) -> HFEngine:
    """The HF engine over `model`; `shared` when it is the actor's own module (local placement)."""
    return HFEngine(model, pad_id=tokenizer.pad_token_id, eos_ids={tokenizer.eos_token_id},
                    max_batch_samples=max(preset.train.micro_rollout_batch_size, preset.rollout.n_samples_per_prompt),
                    shared=shared)


def weights_already_shared() -> None:
    """The local placement's weight sync: the engine generates with the actor's own module, so an
    update is in it already."""


def build_local_run(preset: Preset, run_dir: RunDir, emitter: Emitter) -> Trainer:
    transformers_logging.disable_progress_bar()  # our progress bar is the one on the terminal
    torch.manual_seed(preset.run.seed)
    m = preset.model
    model, tokenizer = load_model_and_tokenizer(m.actor, dtype=m.dtype, seed=preset.run.seed, for_role="actor")
    data = load_run_data(preset, tokenizer)
    actor = Actor(model)
    reference = None
    if preset.algo.kl_coef > 0:
        ref_model = copy.deepcopy(model) if not m.reference else load_model_and_tokenizer(
            m.reference, dtype=m.dtype, seed=preset.run.seed, for_role="reference")[0]
        reference = ReferenceRole(Actor(ref_model), preset)
    critic = None
    if preset.uses_critic:
        critic_model, _ = Critic.from_spec(preset.critic_init, dtype=m.dtype, seed=preset.run.seed)
        critic = CriticRole(critic_model, preset, data.optimizer_steps)
    roles = Roles(actor=ActorRole(actor, preset, data.optimizer_steps), reference=reference, critic=critic,
                  reward=make_reward_source(preset, emitter.emit), engine=hf_engine(model, tokenizer, preset, shared=True),
                  tokenizer=tokenizer, weight_sync=weights_already_shared)
    emit_loaded(emitter, preset, sum(p.numel() for p in model.parameters()), data)
    return Trainer(preset, roles, data.prompts, data.total_steps, emitter.emit, run_dir.checkpoints)
