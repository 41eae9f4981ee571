"""Our attention in Hugging Face models: registered under ``rlhf_ring`` in transformers'
``AttentionInterface`` (and its mask in ``AttentionMaskInterface``).

A model set to it (``use_ring_attention(model)``) computes attention as SDPA does, except in a
packed forward pass: when the call carries ``sequence_slice=SequenceSlice(...)`` (passed down to
every attention layer as a keyword argument), each layer runs ring attention over the packed row
(``SequenceSlice.attend``). No mask is built for a packed pass (``packed_forward`` marks it): the
ring attention derives visibility from the segment ids.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

IMPLEMENTATION = "rlhf_ring"
_PACKED = contextvars.ContextVar("rlhf_packed_forward", default=False)


def ring_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                           sequence_slice=None, **kwargs):
    """The ``AttentionInterface`` function: query [1, H_q, n, D], key/value [1, H_kv, n, D] →
    ([1, n, H_q, D], None) in a packed pass; SDPA's answer otherwise."""
    if sequence_slice is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"a packed forward pass has one row, got a batch of {query.shape[0]}")
    if dropout:
        raise ValueError("ring attention has no attention dropout; set the model's attention_dropout to 0")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = sequence_slice.attend(query[0], key[0], value[0], scale)
    return out.transpose(0, 1).unsqueeze(0), None


def ring_attention_mask(*args, **kwargs):
    """No mask in a packed pass; SDPA's mask otherwise."""
    if _PACKED.get():
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, **kwargs)


@contextlib.contextmanager
def packed_forward() -> Iterator[None]:
    """Mark the forward pass inside as packed (the mask builder returns no mask)."""
    token = _PACKED.set(True)
    try:
        yield
    finally:
        _PACKED.reset(token)


def register() -> None:
    """Register ``rlhf_ring`` with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, ring_attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, ring_attention_mask)


def use_ring_attention(model: torch.nn.Module) -> None:
    """Switch the Hugging Face ``model`` (and its sub-models) to ``rlhf_ring``."""
    register()
    model.set_attn_implementation(IMPLEMENTATION)
