"""The reward model: a transformer backbone plus a linear score head, read at each row's last real token.

Input layout as in ``rlhf_train.models.actor`` (left-padded prompt ++ right-padded response). The
reward of a row is ``score(hidden[last])`` where ``last`` is the column of the row's last token with
``attention_mask == 1`` -- the eos of the response when it has one -- so padding on either side does
not change it.
"""

from __future__ import annotations

import torch

from rlhf_train.models.scalar_head import ScalarHeadModel

SCORE_HEAD = "score"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Column of the last 1 in each row of ``attention_mask`` [B, T] -> [B] (long).
    ``[[0, 1, 1, 0]]`` -> ``[2]``. A row of zeros gives T-1."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.long().flip(dims=[1]).argmax(dim=1)


class RewardModel(ScalarHeadModel):
    """``RewardModel(backbone, score_head=None, seed=0)``: the backbone plus the ``score`` head. A
    missing head is created fresh from ``seed`` (an untrained reward model: for tests and plumbing,
    not for learning)."""

    HEAD = SCORE_HEAD
    ROLE = "reward"

    def forward(self, sequences: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards ``[B]`` (float32): the score head at each row's last real token."""
        hidden = self.hidden_states(sequences, attention_mask)
        last = last_token_index(attention_mask)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.score(picked).squeeze(-1).float()
