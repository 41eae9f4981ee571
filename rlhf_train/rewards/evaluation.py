"""Eval reward (`[eval]`): the policy's mean reward on prompts it does not train on, every N steps.

Prompts: `[eval].prompt_data` (a file, read with `[data]`'s keys), or — when empty — a held-out draw
of the built-in task of `[data].prompt_data`: the same generator under seed `run.seed + EVAL_SEED`,
a stream the training prompts (seed `run.seed`) do not use. The first `[eval].num_prompts` prompts
are evaluated, one response each, greedy (temperature 0) or sampled with the `[rollout]` settings.

Metrics: `eval/reward_mean` = (1/P) Σ_i r_i over the P prompts (raw rewards, never normalised),
`eval/reward_std` (population std), `eval/response_length` (mean generated tokens) and `time/eval_s`.
"""

from __future__ import annotations

from rlhf_train.config.schema import Preset
from rlhf_train.data.prompts import DatasetError, PromptRecord, load_prompts
from rlhf_train.rollout.base import SamplingParams

EVAL_SEED = 7_777_777
"""Offset of the held-out stream's seed from `run.seed`."""


def load_eval_prompts(preset: Preset) -> list[PromptRecord]:
    """The eval prompts of `preset` (empty when `[eval].every_steps` is 0)."""
    e, d = preset.eval, preset.data
    if not e.every_steps:
        return []
    if e.prompt_data:
        return load_prompts(e.prompt_data, input_key=d.input_key, label_key=d.label_key or None,
                            max_samples=e.num_prompts, seed=preset.run.seed)
    if not d.prompt_data.startswith("builtin:"):
        raise DatasetError(f"[eval].prompt_data is empty and [data].prompt_data = {d.prompt_data} is not a built-in "
                           "task, so there is no held-out split; set [eval].prompt_data to a prompt file")
    return load_prompts(d.prompt_data, max_samples=e.num_prompts, seed=preset.run.seed + EVAL_SEED)


def eval_sampling(preset: Preset, step: int) -> SamplingParams:
    """One response per prompt; greedy, or the `[rollout]` sampling with a seed of its own."""
    r = preset.rollout
    return SamplingParams(n=1, max_new_tokens=r.max_new_tokens, temperature=0.0 if preset.eval.greedy else r.temperature,
                          top_p=r.top_p, top_k=r.top_k, seed=(preset.run.seed + EVAL_SEED) * 1_000_003 + step)


def is_eval_step(preset: Preset, step: int, last_step: int) -> bool:
    """Every `[eval].every_steps` steps, and at the last step (when eval is on)."""
    every = preset.eval.every_steps
    return bool(every) and (step % every == 0 or step == last_step)
