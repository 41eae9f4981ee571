"""The critic: a transformer backbone plus a linear value head, values aligned with the actor's log-probs.

For the layout of ``sequences`` / ``attention_mask`` / ``num_actions`` see ``rlhf_train.models.actor``.
The value of response token t is the value of the state *before* it, read from the hidden state at
column t-1 -- the column whose logits give the actor's log-prob of token t. So ``values[:, i]`` and
``Actor(...)[:, i]`` describe the same action, and the values come from hidden-state columns
``-num_actions-1 .. -2`` (as OpenRLHF).
"""

from __future__ import annotations

import torch

from rlhf_train.models.scalar_head import ScalarHeadModel

VALUE_HEAD = "value_head"


class Critic(ScalarHeadModel):
    """``Critic(backbone, value_head=None, seed=0)``: the backbone plus ``value_head``. Loaded from a
    reward model directory (no ``value_head``), the value head starts as the model's ``score`` head."""

    HEAD = VALUE_HEAD
    ROLE = "critic"
    FALLBACK_HEADS = ("score",)  # a critic initialised from a reward model starts from its score head (OpenRLHF)

    def forward(self, sequences: torch.Tensor, attention_mask: torch.Tensor, num_actions: int) -> torch.Tensor:
        """Values ``[B, num_actions]`` (float32): ``value_head(hidden[:, t-1])`` for each of the last
        ``num_actions`` columns t. Padding columns carry finite, meaningless values."""
        width = sequences.shape[1]
        if not 1 <= num_actions < width:
            raise ValueError(f"num_actions must be in [1, {width - 1}] for sequences of width {width}, got {num_actions}")
        if self.ring is not None:
            return self._packed(sequences, attention_mask, num_actions)
        hidden = self.hidden_states(sequences, attention_mask)
        return self.value_head(hidden[:, -num_actions - 1 : -1]).squeeze(-1).float()

    def _packed(self, sequences: torch.Tensor, attention_mask: torch.Tensor, num_actions: int) -> torch.Tensor:
        """``forward`` over the packed batch on this rank's slice of the ring, gathered back."""
        from rlhf_train.attention.forward import gather_previous, packed_forward_pass

        output, packed, _ = packed_forward_pass(self.backbone, self.ring, sequences, attention_mask, num_actions)
        local = self.value_head(output.last_hidden_state[0]).squeeze(-1).float()
        return gather_previous(local, packed, self.ring)
