"""The step loop: generate → reference log-probs, values, rewards → actor log-probs → KL →
advantages → critic and actor updates → weight sync into the engine → repeat.

It talks only to role objects (`roles.py`) and a rollout engine, through the methods a Ray actor
exposes, so the distributed placement reuses it unchanged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf_train.algos import approx_kl, compute_advantages, masked_mean, normalize_advantages
from rlhf_train.algos.diagnostics import explained_variance
from rlhf_train.algos.kl_controller import make_kl_controller
from rlhf_train.checkpoint import store as checkpoint_store
from rlhf_train.checkpoint.faults import NonFiniteError, last_good, nonfinite_stats, nonfinite_tensors
from rlhf_train.checkpoint.state import TrainerState, load_rng, save_rng
from rlhf_train.config.schema import Preset
from rlhf_train.data.prompts import PromptRecord, prompt_token_ids
from rlhf_train.distributed.hybrid import HybridEngine
from rlhf_train.experience import ExperienceBatch, batch_from_generation
from rlhf_train.rewards.evaluation import eval_sampling, is_eval_step, load_eval_prompts
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
    weight_sync: Callable[[], None]
    """Pushes the actor's weights into the engines (Ray: `groups.WeightSync`; local: the engine
    shares the actor's module, so there is nothing to copy)."""


def prompt_batches(prompts: list[PromptRecord], batch_size: int, seed: int, start: int = 0
                   ) -> Iterator[list[PromptRecord]]:
    """Endless rollout batches: each episode a fresh seeded shuffle, the last partial batch dropped.
    The first `start` batches are left out (a resumed run continues where the checkpoint was)."""
    if len(prompts) < batch_size:
        raise ValueError(f"{len(prompts)} prompts cannot fill a rollout batch of {batch_size}")
    episode, offset = divmod(start, len(prompts) // batch_size)
    while True:
        order = list(range(len(prompts)))
        random.Random(seed * 1_000_003 + episode).shuffle(order)
        for begin in range(offset * batch_size, len(order) - batch_size + 1, batch_size):
            yield [prompts[i] for i in order[begin:begin + batch_size]]
        episode, offset = episode + 1, 0


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
        self.last_seq = 0
        self.skipped = 0
        self.prompts = prompts
        self.kl_controller = make_kl_controller(preset.algo)
        self.batches = prompt_batches(prompts, preset.train.rollout_batch_size, preset.run.seed)
        self.eval_prompts = load_eval_prompts(preset)
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
        call = self.hybrid.call  # every role call under [placement].phase_timeout_s (Ray runs)
        batch.old_log_probs = call("actor", "log_probs", roles.actor.log_probs, batch)
        if roles.reference is not None:
            batch.ref_log_probs = call("reference", "log_probs", roles.reference.log_probs, batch)
            batch.kl = approx_kl(batch.old_log_probs, batch.ref_log_probs, p.algo.kl_estimator) * mask
        else:
            batch.kl = torch.zeros_like(batch.old_log_probs)
        if roles.critic is not None:
            batch.values = call("critic", "values", roles.critic.values, batch) * mask

        responses = roles.tokenizer.batch_decode(generation.response_ids, skip_special_tokens=True)
        prompts = [r.prompt for r in records for _ in range(n)]
        labels = [r.label for r in records for _ in range(n)]
        scores = call("reward", "scores", roles.reward.scores, prompts, responses, labels)
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
        stats.update(roles.reward.take_stats())
        if batch.values is not None:
            stats["train/values"] = masked_mean(batch.values, mask).item()
            stats["critic/explained_var"] = explained_variance(batch.values, batch.returns, mask).item()
        self._emit_samples(step, prompts, responses, scores)
        return batch, stats

    def _emit_samples(self, step: int, prompts: list[str], responses: list[str], scores: torch.Tensor) -> None:
        """A few samples of the rollout; none of one with a NaN/inf score (JSON has no such number;
        the step's `skip_batch` warning or `NonFiniteError` reports it)."""
        k = self.preset.telemetry.samples_per_step
        if k and torch.isfinite(scores).all():
            self.emit("sample", step=step, samples=[
                {"prompt": prompts[i], "response": responses[i], "reward": float(scores[i])}
                for i in range(min(k, len(prompts)))])

    def step(self, step: int) -> dict[str, float] | None:
        """One RL step; returns its metrics (names as in DESIGN.md), or None when its batch was
        skipped for non-finite values (`skip_batch`). A non-finite loss or gradient norm after the
        updates raises `NonFiniteError`."""
        t0 = time.perf_counter()
        self.hybrid.begin(step)
        batch, metrics = self.make_experience(next(self.batches), step)
        if bad := nonfinite_tensors(batch):
            return self.skip_batch(step, bad)
        t1 = time.perf_counter()
        seed = self.preset.run.seed * 7919 + step
        if self.roles.critic is not None:
            critic_stats = self.hybrid.train("critic", self.roles.critic.fit, batch, seed)
            metrics.update({f"train/{k}": v for k, v in critic_stats.items()})
        actor_stats = self.hybrid.train("actor", self.roles.actor.fit, batch, self.kl_controller.value, seed)
        metrics.update({f"train/{k}": v for k, v in actor_stats.items()})
        if bad := nonfinite_stats(metrics):
            raise NonFiniteError(f"step {step}: the updates gave non-finite {', '.join(bad)}; the weights are no "
                                 f"longer trustworthy, so the run stops; {last_good(self.last_saved)}")
        t2 = time.perf_counter()
        t_sync = self.hybrid.sync(self.push_weights)
        t3 = time.perf_counter()
        metrics["train/kl_coef"] = self.kl_controller.value
        self.kl_controller.update(metrics["train/kl"], batch.size)
        metrics.update({"time/train_s": t2 - t1, "time/weight_sync_s": t_sync, "perf/step_s": t3 - t0})
        if self.preset.deepspeed.enable_sleep or self.preset.rollout.enable_sleep:
            metrics["time/offload_s"] = self.hybrid.offload_s
        return metrics

    def evaluate(self, step: int) -> dict[str, float]:
        """Eval reward on `[eval]`'s prompts at its steps (`rewards.evaluation`); {} at other steps.
        Runs after the weight sync, with the engine awake and holding the updated policy."""
        if not is_eval_step(self.preset, step, self.total_steps):
            return {}
        p, roles = self.preset, self.roles
        t0 = time.perf_counter()
        prompt_ids = encode_prompts(self.eval_prompts, roles.tokenizer, p.data.max_prompt_len, p.data.apply_chat_template)
        generation = self.hybrid.call("engine", "eval generate", roles.engine.generate, prompt_ids,
                                      eval_sampling(p, step))
        responses = roles.tokenizer.batch_decode(generation.response_ids, skip_special_tokens=True)
        rewards = roles.reward.raw_scores([r.prompt for r in self.eval_prompts], responses,
                                          [r.label for r in self.eval_prompts]).double()
        reward_stats = {"eval/" + name.rsplit("/", 1)[1]: v for name, v in roles.reward.take_stats().items()}
        return {"eval/reward_mean": rewards.mean().item(), "eval/reward_std": rewards.std(correction=0).item(),
                "eval/response_length": sum(map(len, generation.response_ids)) / len(generation),
                "time/eval_s": time.perf_counter() - t0, **reward_stats}

    def skip_batch(self, step: int, bad: list[str]) -> None:
        """Leave out a rollout whose tensors hold NaN/inf (no update), at most
        `[checkpoint].nonfinite_skips` times in a run; then `NonFiniteError`. The engine is given
        the (unchanged) weights back, as after an update, so the next step starts as usual."""
        what = f"step {step}: non-finite {', '.join(bad)} in the rollout"
        allowed = self.preset.checkpoint.nonfinite_skips
        if self.skipped >= allowed:
            raise NonFiniteError(f"{what} ([checkpoint].nonfinite_skips = {allowed} "
                                 f"{'used up' if allowed else ': no skips allowed'}); {last_good(self.last_saved)}")
        self.skipped += 1
        self.hybrid.sync(self.push_weights)
        self.emit("log", level="warning", message=f"{what}: batch skipped without an update "
                  f"({self.skipped} of {allowed} skips)", step=step, skipped=self.skipped)
        return None

    def push_weights(self) -> None:
        """The actor's current weights into every rollout engine (the hybrid engine's sync phase)."""
        self.roles.weight_sync()

    def run(self, on_step: Callable[[int, dict[str, float]], None], should_stop: Callable[[], bool]) -> bool:
        """Run every step, checkpointing every `[checkpoint].save_steps`; returns False when
        `should_stop()` turned true between steps."""
        every = self.preset.checkpoint.save_steps
        for step in range(self.last_step + 1, self.total_steps + 1):
            if should_stop():
                return False
            metrics = self.step(step)
            if metrics is None:  # a skipped batch: no update, no metric
                self.last_step = step
                continue
            metrics.update(self.evaluate(step))
            self.last_step = step
            self.last_seq = self.emit("metric", step=step, values=metrics)
            on_step(step, metrics)
            if every and step % every == 0:
                self.save_checkpoint()
        return True

    def save_checkpoint(self) -> Path | None:
        """Write `checkpoints/step_NNNNNN` atomically (`checkpoint.store.write`), keeping the newest
        `[checkpoint].keep`: the actor in Hugging Face format at its top (loadable as
        `[model].actor`), and under `state/` what an exact resume needs — the actor's and critic's
        training state per rank (`roles.save_training_state`), the trainer's counters
        (`TrainerState`) and this process's random generators. Nothing to do when this step is
        already saved."""
        if self.last_step == self.last_saved or self.last_step == 0:
            return None
        target = checkpoint_store.write(self.checkpoints, self.last_step, self.preset.checkpoint.keep,
                                        self._fill_checkpoint)
        self.last_saved = self.last_step
        self.emit("log", level="info", message=f"checkpoint saved: {target}", checkpoint=str(target),
                  step=self.last_step)
        return target

    def _fill_checkpoint(self, directory: Path) -> None:
        offloaded = [name for name in self.hybrid.trained if self.hybrid.state[name] == "offloaded"]
        for name in offloaded:  # DeepSpeed saves resident states
            self.hybrid.move(name, "idle")
        self.roles.actor.save(directory, self.roles.tokenizer)
        self.roles.actor.save_state(directory / "state" / "actor")
        if self.roles.critic is not None:
            self.roles.critic.save_state(directory / "state" / "critic")
        for name in offloaded:
            self.hybrid.move(name, "offloaded")
        per_episode = len(self.prompts) // self.preset.train.rollout_batch_size
        normalizer = self.roles.reward.normalizer
        TrainerState(step=self.last_step, batches=self.last_step, episode=self.last_step // per_episode,
                     kl_coef=self.kl_controller.value, seq=self.last_seq, skipped=self.skipped,
                     reward_normalizer=normalizer.state() if normalizer else None).save(directory / "state")
        save_rng(directory / "state" / "rng.pt")

    def restore(self, checkpoint: Path) -> TrainerState:
        """Continue from `checkpoint` (a directory `save_checkpoint` wrote): the actor's and critic's
        training state on every rank, the counters, the data position and the random generators;
        then the engines are woken and given the restored weights before the first generation."""
        state = TrainerState.load(checkpoint / "state")
        self.roles.actor.load_state(checkpoint / "state" / "actor")
        if self.roles.critic is not None:
            self.roles.critic.load_state(checkpoint / "state" / "critic")
        load_rng(checkpoint / "state" / "rng.pt")
        self.kl_controller.value = state.kl_coef
        if self.roles.reward.normalizer is not None and state.reward_normalizer is not None:
            self.roles.reward.normalizer.load_state(state.reward_normalizer)
        self.last_step = self.last_saved = state.step
        self.skipped = state.skipped
        self.batches = prompt_batches(self.prompts, self.preset.train.rollout_batch_size, self.preset.run.seed,
                                      start=state.batches)
        if self.hybrid.engine_sleep:  # the sync wakes a sleeping engine and refills its weights
            self.hybrid.move("engine", "asleep")
        self.hybrid.sync(self.push_weights)
        return state
