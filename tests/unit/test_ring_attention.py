"""Ring attention (pure-torch backend) over real gloo process groups equals full attention.

One spawn of 4 CPU processes checks a ring of 4 and two rings of 2 (`join_rings`): outputs and the
gradients of q, k and v against a float64 full-attention reference on the same packed row — within
1e-5 in float32 and 1e-10 in float64 — with samples of different lengths (several straddle slice
borders, one spans three slices), grouped-query heads, head_stride 1 and 2, and the padding tail.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlhf_train.attention.group import join_rings, no_ring
from rlhf_train.attention.packing import pack_rows
from rlhf_train.attention.ring import ring_attention
from rlhf_train.attention.sequence import gather_slices

HEADS_Q, HEADS_KV, DIM = 4, 2, 8
LENGTHS = (5, 11, 1, 3, 9, 2)  # 31 tokens → padded to 32: borders at 8/16/24 (ring 4) and 16 (ring 2)


def packed_segments(multiple: int):
    """A packed row of `LENGTHS` samples (right-aligned in a [6, 12] padded batch) for a ring of `multiple`."""
    width = max(LENGTHS)
    mask = torch.zeros(len(LENGTHS), width, dtype=torch.long)
    for i, n in enumerate(LENGTHS):
        mask[i, width - n:] = 1
    sequences = torch.arange(mask.numel()).view(mask.shape) % 7 + 4
    return pack_rows(sequences, mask, 1, multiple=multiple)


def reference_attention(q, k, v, segments, scale):
    """Full attention in float64 with the packed mask: same segment and key position ≤ query position."""
    q, k, v = (t.double() for t in (q, k, v))
    group = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
    pos = torch.arange(q.shape[1])
    visible = (segments[:, None] == segments[None, :]) & (pos[None, :] <= pos[:, None])
    scores = (q @ k.transpose(1, 2) * scale).masked_fill(~visible, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def check_ring(ring, dtype, tolerance, seed):
    packed = packed_segments(ring.size)
    length = packed.length
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(HEADS_Q, length, DIM, generator=generator, dtype=torch.float64)
    k = torch.randn(HEADS_KV, length, DIM, generator=generator, dtype=torch.float64)
    v = torch.randn(HEADS_KV, length, DIM, generator=generator, dtype=torch.float64)
    weight = torch.randn(HEADS_Q, length, DIM, generator=generator, dtype=torch.float64)
    scale = DIM ** -0.5

    full = [t.clone().requires_grad_() for t in (q, k, v)]
    expected = reference_attention(*full, packed.segment_ids, scale)
    (expected * weight).sum().backward()

    span = ring.local_slice(length)
    local = [t[:, span].to(dtype).clone().requires_grad_() for t in (q, k, v)]
    out = ring_attention(*local, packed.segment_ids, scale, ring)
    assert out.dtype == dtype
    (out * weight[:, span].to(dtype)).sum().backward()

    torch.testing.assert_close(out.double(), expected[:, span].detach(), atol=tolerance, rtol=0)
    for name, mine, ref in zip("qkv", local, full):
        torch.testing.assert_close(mine.grad.double(), ref.grad[:, span], atol=tolerance, rtol=0,
                                   msg=lambda m, name=name: f"d{name} on ring position {ring.position}: {m}")
    gathered = gather_slices(out.detach().transpose(0, 1), ring).transpose(0, 1)
    torch.testing.assert_close(gathered.double(), expected.detach(), atol=tolerance, rtol=0)


def _ranks(rank: int, world: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        rings = [join_rings(rank, world, size, backend="torch", head_stride=stride)
                 for size in (world, 2) for stride in (1, 2)]
        for i, ring in enumerate(rings):
            check_ring(ring, torch.float64, 1e-10, seed=i)
            check_ring(ring, torch.float32, 1e-5, seed=i)
    finally:
        dist.destroy_process_group()


def test_ring_of_4_and_rings_of_2_equal_full_attention(tmp_path):
    mp.spawn(_ranks, args=(4, str(tmp_path / "store")), nprocs=4, join=True)


def test_ring_of_one_is_full_attention_and_needs_no_group():
    ring = no_ring(head_stride=2)
    check_ring(ring, torch.float64, 1e-10, seed=3)
    check_ring(ring, torch.float32, 1e-5, seed=3)


def test_packed_rows_borders_are_the_ones_the_test_means():
    packed = packed_segments(4)
    assert packed.length == 32 and packed.cu_seqlens.tolist() == [0, 5, 16, 17, 20, 29, 31, 32]
    segments = packed.segment_ids.tolist()
    straddling = {segments[b - 1] for b in (8, 16, 24) if segments[b - 1] == segments[b]}
    assert straddling == {1, 4}  # sample 1 spans slices 0-1, sample 4 spans slices 2-3


def test_head_stride_that_does_not_divide_the_kv_heads_is_a_clear_error():
    ring = no_ring(head_stride=3)
    q, k = torch.zeros(4, 4, 8), torch.zeros(2, 4, 8)
    try:
        ring_attention(q, k, k, torch.zeros(4, dtype=torch.long), 1.0, ring)
    except ValueError as error:
        assert "head_stride = 3" in str(error) and "2 key/value heads" in str(error)
    else:
        raise AssertionError("head_stride 3 with 2 KV heads was accepted")
