"""A Hugging Face model's forward pass over a packed batch, split over a ring.

``packed_forward_pass(model, ring, sequences, attention_mask, num_actions)`` packs the batch into one
row padded to a multiple of the ring size (``packing.pack_rows``), runs ``model`` on this rank's
contiguous slice with per-sample position ids and ring attention in every layer (the model must
use ``hf.IMPLEMENTATION``, see ``hf.use_ring_attention``), and returns the model output of the
slice with the ``PackedRows``. ``gather_previous`` turns per-position outputs of the slice into the
[B, A, ...] layout of the whole batch, read one column back (the logits/hidden state at t−1 describe
response token t), gathered over the ring.
"""

from __future__ import annotations

import torch

from rlhf_train.attention.group import RingGroup
from rlhf_train.attention.hf import packed_forward
from rlhf_train.attention.packing import PackedRows, pack_rows, unpack_previous
from rlhf_train.attention.sequence import SequenceSlice, gather_slices


def packed_forward_pass(model: torch.nn.Module, ring: RingGroup, sequences: torch.Tensor,
                        attention_mask: torch.Tensor, num_actions: int):
    """(``model``'s output for this rank's slice of the packed row, the ``PackedRows``, the slice)."""
    packed = pack_rows(sequences, attention_mask, num_actions, multiple=ring.size)
    part = SequenceSlice(ring, packed)
    span = part.span
    with packed_forward():
        output = model(input_ids=packed.input_ids[span].unsqueeze(0), position_ids=packed.position_ids[span].unsqueeze(0),
                       use_cache=False, sequence_slice=part)
    return output, packed, span


def gather_previous(local: torch.Tensor, packed: PackedRows, ring: RingGroup) -> torch.Tensor:
    """This slice's per-position outputs [n, ...] → [B, A, ...] for the whole batch (gathered over
    the ring; entries without a real response token are 0)."""
    return unpack_previous(gather_slices(local, ring), packed)
