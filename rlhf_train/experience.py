"""Experience: a rollout turned into the tensors PPO-style training consumes.

Layout of one batch of N samples (prompt left-padded to P columns, response right-padded to A):

    sequences       [N, P + A]   prompt | response
    attention_mask  [N, P + A]   1 on real prompt and response tokens (response up to its eos)
    action_mask     [N, A]       1 on real response tokens
    old_log_probs   [N, A]       log π_old(a_t) from the actor before the update
    ref_log_probs   [N, A]       log π_ref(a_t), when a KL term is used
    values          [N, A]       critic values, for GAE
    kl              [N, A]       per-token KL estimate (masked)
    advantages      [N, A], returns [N, A]
    scores          [N]          the reward of each sample (before KL shaping)

Samples of one prompt are contiguous (n per prompt), as the group estimators require.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from rlhf_train.rollout.base import Generation
from rlhf_train.rollout.hf_engine import pad_rows


@dataclass
class ExperienceBatch:
    sequences: torch.Tensor
    attention_mask: torch.Tensor
    action_mask: torch.Tensor
    old_log_probs: torch.Tensor | None = None
    ref_log_probs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    scores: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.sequences.shape[0]

    @property
    def num_actions(self) -> int:
        return self.action_mask.shape[1]

    def select(self, index: torch.Tensor | slice) -> "ExperienceBatch":
        """The rows `index` of every tensor (a micro-batch)."""
        return ExperienceBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                                  for f in fields(self)})

    def micro_batches(self, size: int) -> list[slice]:
        return [slice(i, min(i + size, self.size)) for i in range(0, self.size, size)]


def batch_from_generation(gen: Generation, pad_id: int) -> ExperienceBatch:
    """Pad a generation into `sequences`, `attention_mask` and `action_mask` (layout above)."""
    prompt_ids, prompt_mask = pad_rows(gen.prompt_ids, pad_id, left=True)
    response_ids, action_mask = pad_rows(gen.response_ids, pad_id, left=False)
    if response_ids.shape[1] == 0:  # every response empty: keep one (masked) action column
        response_ids, action_mask = torch.full((len(gen), 1), pad_id), torch.zeros((len(gen), 1), dtype=torch.long)
    return ExperienceBatch(sequences=torch.cat([prompt_ids, response_ids], dim=1),
                           attention_mask=torch.cat([prompt_mask, action_mask], dim=1),
                           action_mask=action_mask)
