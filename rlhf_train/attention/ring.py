"""Ring attention in pure torch (any device; gloo on CPU, nccl on CUDA), forward and backward.

Each of the N ranks of a ring holds a contiguous slice of n = L / N tokens of the packed row: its
queries Q_r and its key/value block (K_r, V_r). The blocks travel around the ring; at step s rank r
holds block j = (r − s) mod N and attends to it. With the mask M (key k visible to query q iff both
are in one segment and k ≤ q, global positions) and scale c:

    S_j = c · Q_r K_jᵀ (masked to −∞),   lse_j = logsumexp_k S_j,   O_j = softmax(S_j) V_j

and the blocks merge by log-sum-exp, exactly (the order of merging does not change the result):

    lse ← log(e^lse + e^lse_j),   O ← O · e^(lse_old − lse) + O_j · e^(lse_j − lse)

Blocks after the rank's own (j > r) are fully masked (causal) and skipped. The backward pass is the
flash-attention one with the final lse: with P_j = exp(S_j − lse) and D = rowsum(dO ∘ O),

    dV_j += P_jᵀ dO,   dS_j = P_j ∘ (dO V_jᵀ − D),   dQ += c · dS_j K_j,   dK_j += c · dS_jᵀ Q

where dK_j, dV_j travel with block j around the ring and arrive home after N steps. Grouped-query
attention: query head h reads KV head h // (H_q / H_kv); KV-head gradients sum over their group.
Computation is in float32 at least (float64 stays float64).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from rlhf_train.attention.group import RingGroup


def _pass_on(tensor: torch.Tensor, ring: RingGroup) -> tuple[torch.Tensor, list]:
    """Start sending ``tensor`` to the next rank and receiving the previous rank's into a new buffer;
    returns (buffer, requests) — wait on the requests before reading the buffer or changing ``tensor``."""
    incoming = torch.empty_like(tensor)
    requests = [dist.isend(tensor, ring.next_rank, group=ring.group),
                dist.irecv(incoming, ring.previous_rank, group=ring.group)]
    return incoming, requests


def _wait(requests: list) -> None:
    for request in requests:
        request.wait()


def _visible(segments: torch.Tensor, ring: RingGroup, query_block: int, key_block: int, chunk: int) -> torch.Tensor:
    """[n, n] bool: query (row) of block ``query_block`` sees key (column) of block ``key_block``."""
    q = torch.arange(query_block * chunk, (query_block + 1) * chunk, device=segments.device)
    k = torch.arange(key_block * chunk, (key_block + 1) * chunk, device=segments.device)
    return (segments[q].unsqueeze(1) == segments[k].unsqueeze(0)) & (k.unsqueeze(0) <= q.unsqueeze(1))


def _block_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor, scale: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One block: (O_j [Hk, g, n, D], lse_j [Hk, g, n]); rows that see nothing get lse −∞ and O 0."""
    scores = torch.einsum("hgqd,hkd->hgqk", q, k) * scale
    scores = scores.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.masked_fill(torch.isinf(lse), 0.0).unsqueeze(-1))
    return torch.einsum("hgqk,hkd->hgqd", probs, v), lse


class RingAttention(torch.autograd.Function):
    """``RingAttention.apply(q, k, v, segments, scale, ring)``: q [H_q, n, D], k and v [H_kv, n, D]
    (this rank's slice), ``segments`` [L] the segment id of every packed position (all ranks);
    returns this rank's attention output [H_q, n, D] (module docstring)."""

    @staticmethod
    def forward(ctx, q, k, v, segments, scale, ring):
        dtype = torch.promote_types(q.dtype, torch.float32)
        heads_kv, chunk, dim = k.shape
        group = q.shape[0] // heads_kv
        qg = q.to(dtype).reshape(heads_kv, group, chunk, dim)
        kv = torch.stack([k.to(dtype), v.to(dtype)])
        out = torch.zeros_like(qg)
        lse = torch.full(qg.shape[:-1], float("-inf"), dtype=dtype, device=q.device)
        for step in range(ring.size):
            block = (ring.position - step) % ring.size
            incoming, requests = _pass_on(kv, ring) if step < ring.size - 1 else (None, [])
            if block <= ring.position:
                visible = _visible(segments, ring, ring.position, block, chunk)
                block_out, block_lse = _block_forward(qg, kv[0], kv[1], visible, scale)
                merged = torch.logaddexp(lse, block_lse)
                out = out * torch.exp(lse - merged).unsqueeze(-1) + block_out * torch.exp(block_lse - merged).unsqueeze(-1)
                lse = merged
            _wait(requests)
            kv = incoming if incoming is not None else kv
        ctx.save_for_backward(qg, k, v, out, lse, segments)
        ctx.scale, ctx.ring, ctx.in_dtype = scale, ring, q.dtype
        return out.reshape(q.shape).to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        qg, k, v, out, lse, segments = ctx.saved_tensors
        scale, ring = ctx.scale, ctx.ring
        dtype = qg.dtype
        heads_kv, group, chunk, dim = qg.shape
        d_out = grad_out.to(dtype).reshape(qg.shape)
        delta = (d_out * out).sum(dim=-1, keepdim=True)
        d_q = torch.zeros_like(qg)
        travelling = torch.stack([k.to(dtype), v.to(dtype), torch.zeros_like(k, dtype=dtype),
                                  torch.zeros_like(v, dtype=dtype)])
        for step in range(ring.size):
            block = (ring.position - step) % ring.size
            if block <= ring.position:
                key, value = travelling[0], travelling[1]
                visible = _visible(segments, ring, ring.position, block, chunk)
                scores = (torch.einsum("hgqd,hkd->hgqk", qg, key) * scale).masked_fill(~visible, float("-inf"))
                probs = torch.exp(scores - lse.unsqueeze(-1))
                d_scores = probs * (torch.einsum("hgqd,hkd->hgqk", d_out, value) - delta)
                d_q += torch.einsum("hgqk,hkd->hgqd", d_scores, key) * scale
                travelling[2] += torch.einsum("hgqk,hgqd->hkd", d_scores, qg) * scale
                travelling[3] += torch.einsum("hgqk,hgqd->hkd", probs, d_out)
            if ring.size > 1:
                incoming, requests = _pass_on(travelling, ring)
                _wait(requests)
                travelling = incoming
        d_k, d_v = travelling[2].to(k.dtype), travelling[3].to(v.dtype)
        return d_q.reshape(heads_kv * group, chunk, dim).to(ctx.in_dtype), d_k, d_v, None, None, None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segments: torch.Tensor, scale: float,
                   ring: RingGroup) -> torch.Tensor:
    """Causal, segment-aware attention of this rank's slice over the whole packed row: q [H_q, n, D],
    k and v [H_kv, n, D] → [H_q, n, D]. The ring runs once per group of ``ring.head_stride`` KV heads
    (with their query heads), so at most that many KV heads travel at a time."""
    heads_kv = k.shape[0]
    stride = ring.head_stride
    if heads_kv % stride:
        raise ValueError(f"[ring_attention].head_stride = {stride} does not divide the model's {heads_kv} "
                         f"key/value heads; use a divisor of {heads_kv}")
    if q.shape[0] % heads_kv:
        raise ValueError(f"{q.shape[0]} query heads are not a multiple of {heads_kv} key/value heads")
    group = q.shape[0] // heads_kv
    parts = [RingAttention.apply(q[h * group:(h + stride) * group], k[h:h + stride], v[h:h + stride], segments,
                                 scale, ring)
             for h in range(0, heads_kv, stride)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
