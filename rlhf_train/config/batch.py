"""Batch arithmetic: the words OpenRLHF users trip over, computed and explained.

    samples per rollout          = rollout_batch_size × n_samples_per_prompt
    samples per rank             = samples per rollout / actor data-parallel ranks
                                   (with ring attention: packed samples per ring of
                                   [ring_attention].size ranks; data-parallel ranks = workers / size)
    gradient-accumulation steps  = train_batch_size / (micro_train_batch_size × data-parallel ranks)
    optimizer steps per rollout  = samples per rollout × max_epochs / train_batch_size
    RL steps                     = max_steps, or num_episodes × ⌊prompts / rollout_batch_size⌋
    optimizer steps in total     = RL steps × optimizer steps per rollout

These are the formulas of OpenRLHF v0.6 (`strategy.accumulated_gradient`, PPOTrainer's
`num_update_steps_per_episodes`); the prompt loader drops the last incomplete rollout batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rlhf_train.config.schema import Preset
from rlhf_train.config.topology import data_parallel_size


@dataclass(frozen=True)
class BatchPlan:
    prompts_per_rollout: int
    samples_per_rollout: int
    actor_data_parallel: int
    ring_size: int
    samples_per_rank: int
    micro_train_batch_size: int
    micro_rollout_batch_size: int
    forward_passes_per_rank: int
    gradient_accumulation_steps: int
    optimizer_steps_per_rollout: int
    dataset_prompts: int | None
    rl_steps: int | None
    optimizer_steps_total: int | None

    def as_json(self) -> dict:
        return asdict(self)

    def lines(self, preset: Preset) -> list[str]:
        t, r = preset.train, preset.rollout
        dp = self.actor_data_parallel
        out = [
            f"prompts per rollout          {self.prompts_per_rollout}  (rollout_batch_size)",
            f"samples per rollout          {self.samples_per_rollout} = {t.rollout_batch_size} prompts × "
            f"{r.n_samples_per_prompt} samples",
            f"samples per actor rank       {self.samples_per_rank} = {self.samples_per_rollout} / {dp} data-parallel"
            f" rank{'s' if dp != 1 else ''}" if self.ring_size == 1 else
            f"packed samples per ring      {self.samples_per_rank} = {self.samples_per_rollout} / {dp} data-parallel"
            f" rank{'s' if dp != 1 else ''} (rings of {self.ring_size} ranks: {dp * self.ring_size} actor workers"
            f" / {self.ring_size})",
            f"experience forward passes    {self.forward_passes_per_rank} per rank = ⌈{self.samples_per_rank} / "
            f"{self.micro_rollout_batch_size}⌉ (micro_rollout_batch_size)",
            f"gradient accumulation        {self.gradient_accumulation_steps} = {t.train_batch_size} / "
            f"({t.micro_train_batch_size} micro × {dp} ranks)",
            f"optimizer steps per rollout  {self.optimizer_steps_per_rollout} = {self.samples_per_rollout} samples"
            f" × {t.max_epochs} epochs / {t.train_batch_size}",
        ]
        if self.rl_steps is None:
            out.append("RL steps                     depends on the dataset size (not readable here); "
                       "set [train].max_steps to fix it")
        elif t.max_steps:
            out.append(f"RL steps                     {self.rl_steps}  ([train].max_steps)")
        else:
            out.append(f"RL steps                     {self.rl_steps} = {t.num_episodes} episodes × "
                       f"⌊{self.dataset_prompts} prompts / {t.rollout_batch_size}⌋")
        if self.optimizer_steps_total is not None:
            out.append(f"optimizer steps in total     {self.optimizer_steps_total} = {self.rl_steps} × "
                       f"{self.optimizer_steps_per_rollout}")
        return out


def rl_steps(preset: Preset, dataset_prompts: int | None) -> int | None:
    """RL steps the run takes: `[train].max_steps`, else one per full rollout batch per episode."""
    if preset.train.max_steps:
        return preset.train.max_steps
    if dataset_prompts is None:
        return None
    return preset.train.num_episodes * (dataset_prompts // preset.train.rollout_batch_size)


def plan_batches(preset: Preset, dataset_prompts: int | None = None) -> BatchPlan:
    """The batch plan; assumes the divisibility rules hold (they are checked by `rules`)."""
    t, r = preset.train, preset.rollout
    dp = data_parallel_size(preset, "actor")
    samples = t.rollout_batch_size * r.n_samples_per_prompt
    per_rank = samples // dp
    per_rollout = samples * t.max_epochs // t.train_batch_size
    steps = rl_steps(preset, dataset_prompts)
    return BatchPlan(
        prompts_per_rollout=t.rollout_batch_size,
        samples_per_rollout=samples,
        actor_data_parallel=dp,
        ring_size=preset.ring_attention.size,
        samples_per_rank=per_rank,
        micro_train_batch_size=t.micro_train_batch_size,
        micro_rollout_batch_size=t.micro_rollout_batch_size,
        forward_passes_per_rank=-(-per_rank // t.micro_rollout_batch_size),
        gradient_accumulation_steps=t.train_batch_size // (t.micro_train_batch_size * dp),
        optimizer_steps_per_rollout=per_rollout,
        dataset_prompts=dataset_prompts,
        rl_steps=steps,
        optimizer_steps_total=None if steps is None else steps * per_rollout,
    )
