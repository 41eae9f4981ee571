"""The ring-flash-attn backend (GPU, optional extra ``ring-flash-attn`` + ``flash-attn``), imported
only when used.

It runs ring-flash-attn's llama3 variant: K/V of ``head_stride`` heads at a time are all-gathered
over the ring and every rank computes its query slice with flash-attention's varlen kernel, for
the packed row's ``cu_seqlens`` (causal, no attention across segments). Same contract as
``rlhf_train.attention.ring.ring_attention``.
"""

from __future__ import annotations

import torch

from rlhf_train.attention.group import RingGroup
from rlhf_train.errors import RunError


def import_ring_flash_attn():
    """The ``ring_flash_attn`` module, or a RunError saying how to install it or avoid it."""
    try:
        import ring_flash_attn
    except ImportError as error:
        raise RunError(f"[ring_attention].backend = \"flash\" needs the ring-flash-attn package ({error}); install "
                       "it with `pip install ring-flash-attn flash-attn` on a CUDA machine, or set "
                       "[ring_attention].backend = \"torch\"") from None
    return ring_flash_attn


def flash_ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, scale: float,
                         ring: RingGroup) -> torch.Tensor:
    """q [H_q, n, D], k and v [H_kv, n, D] (this rank's slice), ``cu_seqlens`` of the whole packed row
    → [H_q, n, D]."""
    if not q.is_cuda:
        raise RunError("[ring_attention].backend = \"flash\" runs on CUDA tensors only; set backend = \"torch\"")
    module = import_ring_flash_attn()
    cu_q, cu_k, max_q, max_k, local_k_slice = module.llama3_flash_attn_prepare_cu_seqlens(
        cu_seqlens.to(q.device, torch.int32), causal=True, rank=ring.position, world_size=ring.size)
    out = module.llama3_flash_attn_varlen_func(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), cu_q, cu_k, max_q, max_k,
        heads_k_stride=ring.head_stride, local_k_slice=local_k_slice, softmax_scale=scale, causal=True,
        group=ring.group)
    return out.transpose(0, 1)
