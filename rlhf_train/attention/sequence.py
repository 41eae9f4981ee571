"""One packed row split over a ring: this rank's slice, its attention, and the gather back.

``SequenceSlice`` is what a packed forward pass hands to every attention layer (through the
model's keyword arguments, so activation checkpointing's recomputation sees it too): the ring, the
segment ids and ``cu_seqlens`` of the whole row. ``gather_slices`` puts the per-rank outputs back
together for the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from rlhf_train.attention.group import RingGroup
from rlhf_train.attention.packing import PackedRows
from rlhf_train.attention.ring import ring_attention


@dataclass(frozen=True)
class SequenceSlice:
    """This rank's part of one packed row: ``span`` of positions, over ``ring``."""

    ring: RingGroup
    packed: PackedRows

    @property
    def span(self) -> slice:
        return self.ring.local_slice(self.packed.length)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """Attention of this slice's queries q [H_q, n, D] over the whole row (k, v [H_kv, n, D] are
        this slice's); the backend the ring names (ring-flash-attn for "flash" on a ring of more than one)."""
        if self.ring.backend == "flash" and self.ring.size > 1:
            from rlhf_train.attention.flash import flash_ring_attention

            return flash_ring_attention(q, k, v, self.packed.cu_seqlens, scale, self.ring)
        return ring_attention(q, k, v, self.packed.segment_ids.to(q.device), scale, self.ring)


class _GatherSlices(torch.autograd.Function):
    """Forward: all-gather the ring's equal slices along dim 0. Backward: this rank's slice of the
    gradient. Every rank of the ring computes the same loss from the gathered tensor, so the
    gradient of its own slice is the whole of what flows back to it (summing would count it N times)."""

    @staticmethod
    def forward(ctx, local, ring):
        parts = [torch.empty_like(local) for _ in range(ring.size)]
        dist.all_gather(parts, local.contiguous(), group=ring.group)
        ctx.ring, ctx.chunk = ring, local.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        start = ctx.ring.position * ctx.chunk
        return grad[start:start + ctx.chunk].contiguous(), None


def gather_slices(local: torch.Tensor, ring: RingGroup) -> torch.Tensor:
    """The ring's slices [n, ...] concatenated in ring order → [N·n, ...] (differentiable, see `_GatherSlices`)."""
    if ring.size == 1:
        return local
    return _GatherSlices.apply(local, ring)
