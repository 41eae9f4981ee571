"""Non-finite values in a step: found before the update (a rollout batch whose rewards, log-probs,
values, KL, advantages or returns hold NaN/inf can be skipped, `[checkpoint].nonfinite_skips`
times), or after it (a NaN/inf loss or gradient norm: the weights are already changed, the run
stops). Either way the run ends with `NonFiniteError` naming the step and what was not finite,
and the checkpoints already written are left as they are.
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch

from rlhf_train.errors import RunError
from rlhf_train.experience import ExperienceBatch

CHECKED = ("scores", "old_log_probs", "ref_log_probs", "values", "kl", "advantages", "returns")
"""The float tensors of an experience batch the updates read."""


class NonFiniteError(RunError):
    """NaN or inf where the step needs finite numbers; the message names the step and the values."""


def nonfinite_tensors(batch: ExperienceBatch) -> list[str]:
    """The fields of `batch` (of `CHECKED`) holding a NaN or an infinity, with how many."""
    names = {f.name for f in fields(batch)}
    out = []
    for name in CHECKED:
        tensor = getattr(batch, name) if name in names else None
        if tensor is not None:
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                out.append(f"{name} ({bad} of {tensor.numel()})")
    return out


def nonfinite_stats(stats: dict[str, float]) -> list[str]:
    """The statistics of an update (losses, gradient norms) that are NaN or infinite, with their value."""
    return [f"{name} = {value}" for name, value in sorted(stats.items()) if not math.isfinite(value)]


def last_good(saved_step: int) -> str:
    return (f"the last checkpoint is step {saved_step}; `--resume` continues from it" if saved_step
            else "no checkpoint was written yet")
