"""The roles of a run — actor, reference, critic, reward — as objects with the methods a Ray actor
exposes (`log_probs`, `values`, `fit`, `scores`, `state_dict`, `save`). The step loop talks only to
these methods, so the distributed placement moves them into processes without touching the loop.

These are the in-process implementations (`placement.mode = "local"`): plain torch AdamW with
gradient accumulation and clipping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from rlhf_train.algos import aggregate_loss, entropy_from_logits, kl_loss, policy_loss, value_loss
from rlhf_train.config.schema import Preset, TrainConfig
from rlhf_train.experience import ExperienceBatch


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Learning-rate multiplier after `step` optimizer steps: linear warm-up to 1 over
    `warmup_steps`, then constant, or cosine from 1 down to `min_lr_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Optimized:
    """A module with its AdamW, schedule, gradient accumulation and clipping."""

    def __init__(self, module: nn.Module, lr: float, train: TrainConfig, total_steps: int):
        self.module = module
        params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=(train.adam_beta1, train.adam_beta2),
                                           weight_decay=train.weight_decay)
        warmup = math.ceil(train.lr_warmup_ratio * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup, total_steps, train.lr_scheduler, train.min_lr_ratio))
        self.max_norm = train.max_norm

    def step(self) -> float:
        """Clip, step, advance the schedule; returns the gradient norm before clipping."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm if self.max_norm > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def fit_epochs(batch: ExperienceBatch, optimized: Optimized, loss_fn: Callable[[ExperienceBatch], tuple[torch.Tensor,
               dict[str, float]]], train: TrainConfig, data_parallel: int, seed: int) -> dict[str, float]:
    """`max_epochs` passes over `batch` in shuffled micro-batches, one optimizer step per
    train_batch_size samples (gradient accumulation over the micro-batches in between).
    Returns the mean of every statistic `loss_fn` reports, plus the gradient norm and lr."""
    accumulation = train.train_batch_size // (train.micro_train_batch_size * data_parallel)
    generator = torch.Generator().manual_seed(seed)
    totals: dict[str, float] = {}
    count = 0
    norms = []
    for _ in range(train.max_epochs):
        order = torch.randperm(batch.size, generator=generator)
        for i, part in enumerate(batch.micro_batches(train.micro_train_batch_size)):
            loss, stats = loss_fn(batch.select(order[part]))
            (loss / accumulation).backward()
            if (i + 1) % accumulation == 0:
                norms.append(optimized.step())
            for name, value in stats.items():
                totals[name] = totals.get(name, 0.0) + value
            count += 1
    means = {name: total / count for name, total in totals.items()}
    means["grad_norm"] = sum(norms) / len(norms) if norms else 0.0
    return means


@torch.no_grad()
def forward_in_chunks(fn: Callable[[ExperienceBatch], torch.Tensor], batch: ExperienceBatch, size: int
                      ) -> torch.Tensor:
    return torch.cat([fn(batch.select(part)) for part in batch.micro_batches(size)], dim=0)


class ActorRole:
    """The policy: log-probs of responses, and the PPO-clip update (with the KL loss and entropy
    terms when configured)."""

    def __init__(self, actor: nn.Module, preset: Preset, total_optimizer_steps: int):
        self.actor = actor
        self.preset = preset
        self.temperature = preset.rollout.temperature or 1.0
        self.optimized = Optimized(actor, preset.train.actor_lr, preset.train, total_optimizer_steps)
        self.kl_coef = preset.algo.kl_coef

    def _log_probs(self, mb: ExperienceBatch) -> torch.Tensor:
        return self.actor(mb.sequences, mb.attention_mask, mb.num_actions, temperature=self.temperature)

    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return forward_in_chunks(self._log_probs, batch, self.preset.train.micro_rollout_batch_size)

    def _loss(self, mb: ExperienceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        algo = self.preset.algo
        log_probs, logits = self.actor(mb.sequences, mb.attention_mask, mb.num_actions, return_logits=True,
                                       temperature=self.temperature)
        out = policy_loss(log_probs, mb.old_log_probs, mb.advantages, mb.action_mask, algo.clip_eps_low,
                          algo.clip_eps_high, algo.dual_clip or None, algo.loss_agg)
        loss = out.loss
        stats = {"policy_loss": out.loss.item(), "clip_frac": float(out.clip_frac), "approx_kl": float(out.approx_kl)}
        if algo.use_kl_loss and mb.ref_log_probs is not None:
            kl = kl_loss(log_probs, mb.ref_log_probs, mb.action_mask, algo.kl_estimator, algo.loss_agg)
            loss = loss + self.kl_coef * kl
            stats["kl_loss"] = kl.item()
        entropy = aggregate_loss(entropy_from_logits(logits), mb.action_mask, algo.loss_agg)
        if algo.entropy_coef:
            loss = loss - algo.entropy_coef * entropy
        stats["entropy"] = entropy.item()
        return loss, stats

    def fit(self, batch: ExperienceBatch, kl_coef: float, seed: int) -> dict[str, float]:
        self.kl_coef = kl_coef
        stats = fit_epochs(batch, self.optimized, self._loss, self.preset.train, 1, seed)
        stats["actor_lr"] = self.optimized.lr
        return stats

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.actor.model.state_dict()

    def save(self, directory: Path, tokenizer) -> None:
        self.actor.model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)


class ReferenceRole:
    """The frozen reference policy: log π_ref of the sampled tokens."""

    def __init__(self, actor: nn.Module, preset: Preset):
        self.actor = actor.requires_grad_(False)
        self.preset = preset
        self.temperature = preset.rollout.temperature or 1.0

    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return forward_in_chunks(
            lambda mb: self.actor(mb.sequences, mb.attention_mask, mb.num_actions, temperature=self.temperature),
            batch, self.preset.train.micro_rollout_batch_size)


class CriticRole:
    """The value function for GAE: values of the states before each response token, and the
    clipped value-loss update."""

    def __init__(self, critic: nn.Module, preset: Preset, total_optimizer_steps: int):
        self.critic = critic
        self.preset = preset
        self.optimized = Optimized(critic, preset.train.critic_lr, preset.train, total_optimizer_steps)

    def values(self, batch: ExperienceBatch) -> torch.Tensor:
        return forward_in_chunks(lambda mb: self.critic(mb.sequences, mb.attention_mask, mb.num_actions),
                                 batch, self.preset.train.micro_rollout_batch_size)

    def _loss(self, mb: ExperienceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        values = self.critic(mb.sequences, mb.attention_mask, mb.num_actions)
        loss = value_loss(values, mb.values, mb.returns, mb.action_mask, self.preset.algo.value_clip or None,
                          self.preset.algo.loss_agg)
        return loss, {"critic_loss": loss.item()}

    def fit(self, batch: ExperienceBatch, seed: int) -> dict[str, float]:
        stats = fit_epochs(batch, self.optimized, self._loss, self.preset.train, 1, seed)
        stats["critic_lr"] = self.optimized.lr
        stats["critic_grad_norm"] = stats.pop("grad_norm")
        return stats
