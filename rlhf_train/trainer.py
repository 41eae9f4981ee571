"""The step loop: generate → reference log-probs, values, rewards → actor log-probs → KL →
advantages → critic and actor updates → weight sync into the engine → repeat.

It talks only to role objects (`roles.py`) and a rollout engine, through the methods a Ray actor
exposes, so the distributed placement reuses it unchanged.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf_train.algos import approx_kl, compute_advantages, masked_mean, normalize_advantages
from rlhf_train.algos.diagnostics import explained_variance
from rlhf_train.algos.kl_controller import make_kl_controller
from rlhf_train.config.schema import Preset
from rlhf_train.data.prompts import PromptRecord, prompt_token_ids
from rlhf_train.distributed.hybrid import HybridEngine
from rlhf_train.experience import ExperienceBatch, batch_from_generation
from rlhf_train.rewards.source import RewardSource
from rlhf_train.roles import ActorRole, CriticRole, ReferenceRole
from rlhf_train.rollout.base import RolloutEngine, SamplingParams


@dataclass
class Roles:
    actor: ActorRole
    reference: ReferenceRole | None
    critic: CriticRole | None
    reward: RewardSource
    engine: RolloutEngine
    tokenizer: object


def prompt_batches(prompts: list[PromptRecord], batch_size: int, seed: int) -> Iterator[list[PromptRecord]]:
    """Endless rollout batches: each episode a fresh seeded shuffle, the last partial batch dropped."""
    if len(prompts) < batch_size:
        raise ValueError(f"{len(prompts)} prompts cannot fill a rollout batch of {batch_size}")
    episode = 0
    while True:
        order = list(range(len(prompts)))
        random.Random(seed * 1_000_003 + episode).shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [prompts[i] for i in order[start:start + batch_size]]
        episode += 1


def encode_prompts(records: list[PromptRecord], tokenizer, max_len: int, chat_template: bool) -> list[list[int]]:
    """Token ids of each prompt (chat template applied when asked), truncated from the left to
    `max_len` (the end of a prompt, where the question and the generation prompt are, matters most)."""
    return [prompt_token_ids(tokenizer, r.prompt, apply_chat_template=chat_template)[-max_len:] for r in records]


class Trainer:
    def __init__(self, preset: Preset, roles: Roles, prompts: list[PromptRecord], total_steps: int,
                 emit: Callable[..., int], checkpoints: Path):
        self.preset = preset
        self.roles = roles
        self.total_steps = total_steps
        self.emit = emit
        self.checkpoints = checkpoints
        self.last_step = 0
        self.last_saved = 0
        self.kl_controller = make_kl_controller(preset.algo)
        self.batches = prompt_batches(prompts, preset.train.rollout_batch_size, preset.run.seed)
        self.hybrid = HybridEngine(
            {"engine": roles.engine, "actor": roles.actor, **({"critic": roles.critic} if roles.critic else {})},
            engine_sleep=preset.rollout.enable_sleep, offload=preset.deepspeed.enable_sleep,
            on_state=lambda role, source, target: emit("state", role=role, **{"from": source, "to": target}),
            timeout_s=preset.placement.phase_timeout_s if preset.placement.mode == "ray" else None)

    def sampling(self, step: int) -> SamplingParams:
        r = self.preset.rollout
        return SamplingParams(n=r.n_samples_per_prompt, max_new_tokens=r.max_new_tokens, temperature=r.temperature,
                              top_p=r.top_p, top_k=r.top_k, seed=self.preset.run.seed * 1_000_003 + step)

    def make_experience(self, records: list[PromptRecord], step: int) -> tuple[ExperienceBatch, dict[str, float]]:
        """Generate and score one rollout; fill every tensor the updates need."""
        p, roles = self.preset, self.roles
        n = p.rollout.n_samples_per_prompt
        t0 = time.perf_counter()
        prompt_ids = encode_prompts(records, roles.tokenizer, p.data.max_prompt_len, p.data.apply_chat_template)
        generation = self.hybrid.generate(roles.engine.generate, prompt_ids, self.sampling(step))
        t_generate = time.perf_counter() - t0
        self.hybrid.experience()
        t_loaded = time.perf_counter()

        batch = batch_from_generation(generation, roles.tokenizer.pad_token_id)
        mask = batch.action_mask
        batch.old_log_probs = roles.actor.log_probs(batch)
        if roles.reference is not None:
            batch.ref_log_probs = roles.reference.log_probs(batch)
            batch.kl = approx_kl(batch.old_log_probs, batch.ref_log_probs, p.algo.kl_estimator) * mask
        else:
            batch.kl = torch.zeros_like(batch.old_log_probs)
        if roles.critic is not None:
            batch.values = roles.critic.values(batch) * mask

        responses = roles.tokenizer.batch_decode(generation.response_ids, skip_special_tokens=True)
        prompts = [r.prompt for r in records for _ in range(n)]
        labels = [r.label for r in records for _ in range(n)]
        scores = roles.reward.scores(prompts, responses, labels)
        if p.algo.reward_clip:
            scores = scores.clamp(-p.algo.reward_clip, p.algo.reward_clip)
        batch.scores = scores

        kl_in_reward = 0.0 if p.algo.use_kl_loss else self.kl_controller.value
        batch.advantages, batch.returns = compute_advantages(
            p.advantage_estimator, scores=scores, kl=batch.kl, action_mask=mask, kl_coef=kl_in_reward,
            n_samples_per_prompt=n, gamma=p.algo.gamma, lambd=p.algo.gae_lambda, values=batch.values,
            std_norm=p.algo.group_norm_std)
        if p.advantage_estimator != "group_norm":
            batch.advantages = normalize_advantages(batch.advantages, mask)

        lengths = mask.sum(dim=1).float()
        stats = {
            "rollout/response_length_max": lengths.max().item(),
            "reward/mean": scores.mean().item(),
            "reward/std": scores.std().item() if len(scores) > 1 else 0.0,
            "train/kl": masked_mean(batch.kl, mask).item(),
            "train/return": masked_mean(batch.returns, mask).item(),
            "rollout/response_length": lengths.mean().item(),
            "rollout/truncated_frac": sum(generation.truncated) / len(generation),
            "perf/rollout_tokens_per_s": generation.response_tokens / max(t_generate, 1e-9),
            "time/generate_s": t_generate,
            "time/make_experience_s": time.perf_counter() - t_loaded,
        }
        if batch.values is not None:
            stats["train/values"] = masked_mean(batch.values, mask).item()
            stats["critic/explained_var"] = explained_variance(batch.values, batch.returns, mask).item()
        self._emit_samples(step, prompts, responses, scores)
        return batch, stats

    def _emit_samples(self, step: int, prompts: list[str], responses: list[str], scores: torch.Tensor) -> None:
        k = self.preset.telemetry.samples_per_step
        if k:
            self.emit("sample", step=step, samples=[
                {"prompt": prompts[i], "response": responses[i], "reward": float(scores[i])}
                for i in range(min(k, len(prompts)))])

    def step(self, step: int) -> dict[str, float]:
        """One RL step; returns its metrics (names as in DESIGN.md)."""
        t0 = time.perf_counter()
        self.hybrid.begin(step)
        batch, metrics = self.make_experience(next(self.batches), step)
        t1 = time.perf_counter()
        seed = self.preset.run.seed * 7919 + step
        if self.roles.critic is not None:
            critic_stats = self.hybrid.train("critic", self.roles.critic.fit, batch, seed)
            metrics.update({f"train/{k}": v for k, v in critic_stats.items()})
        actor_stats = self.hybrid.train("actor", self.roles.actor.fit, batch, self.kl_controller.value, seed)
        metrics.update({f"train/{k}": v for k, v in actor_stats.items()})
        t2 = time.perf_counter()
        t_sync = self.hybrid.sync(self.push_weights)
        t3 = time.perf_counter()
        metrics["train/kl_coef"] = self.kl_controller.value
        self.kl_controller.update(metrics["train/kl"], batch.size)
        metrics.update({"time/train_s": t2 - t1, "time/weight_sync_s": t_sync, "perf/step_s": t3 - t0})
        if self.preset.deepspeed.enable_sleep or self.preset.rollout.enable_sleep:
            metrics["time/offload_s"] = self.hybrid.offload_s
        return metrics

    def push_weights(self) -> None:
        """The actor's current weights into every rollout engine (the hybrid engine's sync phase)."""
        self.roles.engine.load_weights(self.roles.actor.state_dict())

    def run(self, on_step: Callable[[int, dict[str, float]], None], should_stop: Callable[[], bool]) -> bool:
        """Run every step, checkpointing every `[checkpoint].save_steps`; returns False when
        `should_stop()` turned true between steps."""
        every = self.preset.checkpoint.save_steps
        for step in range(1, self.total_steps + 1):
            if should_stop():
                return False
            metrics = self.step(step)
            self.last_step = step
            self.emit("metric", step=step, values=metrics)
            on_step(step, metrics)
            if every and step % every == 0:
                self.save_checkpoint()
        return True

    def save_checkpoint(self) -> Path | None:
        """Save the actor (HF format, loadable as `[model].actor`) as `checkpoints/step_NNNNNN`,
        keeping the newest `[checkpoint].keep`. Nothing to do when this step is already saved."""
        if self.last_step == self.last_saved or self.last_step == 0:
            return None
        target = self.checkpoints / f"step_{self.last_step:06d}"
        partial = target.with_name(target.name + ".partial")
        self.roles.actor.save(partial, self.roles.tokenizer)
        partial.rename(target)
        self.last_saved = self.last_step
        saved = sorted(p for p in self.checkpoints.glob("step_*") if p.is_dir() and not p.name.endswith(".partial"))
        for old in saved[:-self.preset.checkpoint.keep]:
            shutil.rmtree(old)
        self.emit("log", level="info", message=f"checkpoint saved: {target}")
        return target
