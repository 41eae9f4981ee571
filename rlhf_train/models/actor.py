"""The policy (and reference) model: per-token log-probabilities of response tokens.

Sequence layout (the one rollout produces and every role consumes)::

    sequences       [B, T] = left-padded prompt ++ right-padded response
    attention_mask  [B, T] = 1 on real tokens, 0 on both paddings
    num_actions            = response width R; the response occupies the last R columns

Position ids are recomputed from the attention mask (``cumsum - 1``, pads set to 1, as OpenRLHF),
so the same tokens give the same log-probs however much padding surrounds them.

Packed (``pack_over(ring)``, `[train].packing_samples`): the batch runs as one packed row without
padding, split over a ring of ranks with ring attention (``rlhf_train.attention``); the outputs are
the same, in the same layout, gathered over the ring.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each real token counted from the row's first real token; padding positions get 1.

    ``[[0, 0, 1, 1, 1, 0]]`` -> ``[[1, 1, 0, 1, 2, 1]]``. Shape and device of ``attention_mask``, dtype long.
    """
    mask = attention_mask.long()
    position_ids = mask.cumsum(dim=-1) - 1
    return position_ids.masked_fill(mask == 0, 1)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[..., token]`` computed in float32: ``logits[tok] - logsumexp(logits)``.

    ``logits`` [..., V], ``tokens`` [...] (long) -> [...] float32.
    """
    logits = logits.float()
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


class Actor(nn.Module):
    """Wraps a Hugging Face causal LM (``model(input_ids, attention_mask, position_ids).logits``).

    ``forward`` returns ``log π(sequences[:, t] | sequences[:, :t])`` for the last ``num_actions``
    columns t, i.e. ``log_softmax(logits[:, t-1] / temperature)[sequences[:, t]]``; shape
    ``[B, num_actions]``, float32. Values at padding columns of the response are meaningless
    (finite) and must be masked by the caller's action mask.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        try:
            self._accepts_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            self._accepts_logits_to_keep = False
        self.ring = None

    def pack_over(self, ring) -> None:
        """Run packed from now on, over ``ring`` (an ``attention.group.RingGroup``; size 1 = packing alone)."""
        from rlhf_train.attention.hf import use_ring_attention

        use_ring_attention(self.model)
        self.ring = ring

    @property
    def config(self):
        """The wrapped model's config."""
        return self.model.config

    def forward(
        self,
        sequences: torch.Tensor,
        attention_mask: torch.Tensor,
        num_actions: int,
        return_logits: bool = False,
        temperature: float = 1.0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Log-probs ``[B, num_actions]`` of the response tokens; with ``return_logits`` also the
        logits that produced them, ``[B, num_actions, V]`` (float32, divided by ``temperature``),
        e.g. for the entropy. ``1 <= num_actions < T`` is required (a response needs a prompt token
        before it)."""
        batch, width = sequences.shape
        if not 1 <= num_actions < width:
            raise ValueError(f"num_actions must be in [1, {width - 1}] for sequences of width {width}, got {num_actions}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if self.ring is not None:
            return self._packed(sequences, attention_mask, num_actions, return_logits, temperature)
        kwargs = dict(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        )
        if self._accepts_logits_to_keep:
            kwargs["logits_to_keep"] = num_actions + 1  # lm_head only on the columns we need
        logits = self.model(**kwargs).logits
        logits = logits[:, -num_actions - 1 : -1].float()  # logits at t-1 predict the token at t
        if temperature != 1.0:
            logits = logits / temperature
        log_probs = token_log_probs(logits, sequences[:, -num_actions:])
        if return_logits:
            return log_probs, logits
        return log_probs

    def _packed(self, sequences, attention_mask, num_actions, return_logits, temperature):
        """``forward`` over the packed batch on this rank's slice of the ring, gathered back."""
        from rlhf_train.attention.forward import gather_previous, packed_forward_pass

        output, packed, span = packed_forward_pass(self.model, self.ring, sequences, attention_mask, num_actions)
        logits = output.logits[0].float()
        if temperature != 1.0:
            logits = logits / temperature
        local = token_log_probs(logits, packed.next_token_ids(pad_id=0)[span])
        log_probs = gather_previous(local, packed, self.ring)
        if return_logits:
            return log_probs, gather_previous(logits, packed, self.ring)
        return log_probs
