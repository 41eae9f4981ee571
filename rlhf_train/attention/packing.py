"""Sample packing: the padded rows of a batch as one row without padding.

A batch in the experience layout (``sequences`` / ``attention_mask`` [B, T], the response in the last
``num_actions`` = A columns, see ``rlhf_train.models.actor``) becomes one packed row::

    input_ids     [L]  the real tokens of row 0, then of row 1, ... (attention_mask == 1, in order)
    position_ids  [L]  0, 1, ... restarting at every sample
    segment_ids   [L]  the sample each token belongs to; the padding tail is segment B
    cu_seqlens    [S+1] cumulative segment lengths (int32): 0, len_0, len_0 + len_1, ..., L
    source        [B, A] packed index of the token in response column j of row i, -1 where the
                  column holds no real token

L is the real token count rounded up to a multiple of ``multiple`` (the ring size) with pad tokens
that form a segment of their own (so they attend only to each other and never to a sample). A token
attends to the tokens of its own segment up to itself (causal); never across a sample boundary.

Outputs read "one column back" (the logits at t-1 predict the token at t, the critic's value of
token t is read at t-1) come back to the [B, A] layout with :func:`unpack_previous`: entry (i, j)
is the packed output at ``source[i, j] - 1``, the previous token of the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PackedRows:
    """One packed row (module docstring); ``samples`` = B, ``length`` = L."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segment_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    source: torch.Tensor
    samples: int

    @property
    def length(self) -> int:
        return self.input_ids.shape[0]

    def next_token_ids(self, pad_id: int) -> torch.Tensor:
        """[L]: the token after each position (``input_ids[p + 1]``; ``pad_id`` after the last one)."""
        return torch.cat([self.input_ids[1:], self.input_ids.new_full((1,), pad_id)])


def pack_rows(sequences: torch.Tensor, attention_mask: torch.Tensor, num_actions: int, *, multiple: int = 1,
              pad_id: int = 0) -> PackedRows:
    """Pack ``sequences`` [B, T] (real tokens where ``attention_mask`` is 1) into one row whose length
    is a multiple of ``multiple``; see the module docstring for the fields."""
    if sequences.dim() != 2 or sequences.shape != attention_mask.shape:
        raise ValueError(f"sequences and attention_mask must be [B, T] of one shape, got {tuple(sequences.shape)} "
                         f"and {tuple(attention_mask.shape)}")
    if not 1 <= num_actions <= sequences.shape[1]:
        raise ValueError(f"num_actions must be in [1, {sequences.shape[1]}], got {num_actions}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    device = sequences.device
    real = attention_mask.bool()
    lengths = real.sum(dim=1)
    total = int(lengths.sum())
    length = -(-max(total, 1) // multiple) * multiple
    padding = length - total
    batch = sequences.shape[0]

    input_ids = torch.full((length,), pad_id, dtype=sequences.dtype, device=device)
    input_ids[:total] = sequences[real]
    seg_lengths = torch.cat([lengths, lengths.new_tensor([padding])]) if padding else lengths
    segment_ids = torch.repeat_interleave(torch.arange(len(seg_lengths), device=device), seg_lengths)
    cu_seqlens = torch.zeros(len(seg_lengths) + 1, dtype=torch.int32, device=device)
    cu_seqlens[1:] = seg_lengths.cumsum(0)
    position_ids = torch.arange(length, device=device) - cu_seqlens[segment_ids].long()

    packed_index = real.long().cumsum(dim=1) - 1 + (cu_seqlens[:batch].long()).unsqueeze(1)
    packed_index = packed_index.masked_fill(~real, -1)
    return PackedRows(input_ids=input_ids, position_ids=position_ids, segment_ids=segment_ids,
                      cu_seqlens=cu_seqlens, source=packed_index[:, -num_actions:], samples=batch)


def unpack_previous(values: torch.Tensor, packed: PackedRows, fill: float = 0.0) -> torch.Tensor:
    """``values`` [L, ...] (one entry per packed position) → [B, A, ...]: entry (i, j) is
    ``values[source[i, j] - 1]`` when that position is the previous token of the same sample, else
    ``fill`` (a column without a real token, or a sample's first token, which has no predecessor).
    Differentiable in ``values``."""
    source = packed.source
    previous = source - 1
    valid = (source > 0) & (packed.segment_ids[previous.clamp(min=0)] == packed.segment_ids[source.clamp(min=0)])
    picked = values[previous.clamp(min=0)]
    shape = valid.shape + (1,) * (values.dim() - 1)
    return torch.where(valid.view(shape), picked, torch.full_like(picked, fill))
