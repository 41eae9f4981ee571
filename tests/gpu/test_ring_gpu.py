"""Ring attention on CUDA (skipped without a GPU by tests/conftest.py): the pure-torch backend on
CUDA tensors against float64 full attention — a ring of one on any GPU, a ring of 2 over nccl with
two GPUs — and the ring-flash-attn backend against the torch backend when ring_flash_attn imports
(the lent machines cannot build flash-attn, so there it is skipped with that reason)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlhf_train.attention.group import RingGroup, join_rings, no_ring
from rlhf_train.attention.sequence import SequenceSlice
from tests.unit.test_ring_attention import DIM, HEADS_KV, HEADS_Q, packed_segments, reference_attention


def compare(ring: RingGroup, device: torch.device, dtype: torch.dtype, tolerance: float) -> None:
    """This rank's output and q/k/v gradients against the float64 reference on the CPU."""
    packed = packed_segments(ring.size)
    generator = torch.Generator().manual_seed(7)
    full = [torch.randn(h, packed.length, DIM, generator=generator, dtype=torch.float64).requires_grad_()
            for h in (HEADS_Q, HEADS_KV, HEADS_KV)]
    weight = torch.randn(HEADS_Q, packed.length, DIM, generator=generator, dtype=torch.float64)
    expected = reference_attention(*full, packed.segment_ids, DIM ** -0.5)
    (expected * weight).sum().backward()
    part = SequenceSlice(ring, packed)
    span = part.span
    local = [t.detach()[:, span].to(device, dtype).requires_grad_() for t in full]
    out = part.attend(*local, DIM ** -0.5)
    (out * weight[:, span].to(device, dtype)).sum().backward()
    torch.testing.assert_close(out.double().cpu(), expected[:, span].detach(), atol=tolerance, rtol=0)
    for mine, ref in zip(local, full):
        torch.testing.assert_close(mine.grad.double().cpu(), ref.grad[:, span], atol=tolerance, rtol=0)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_torch_backend_on_cuda_equals_full_attention(dtype, tolerance):
    compare(no_ring(head_stride=1), torch.device("cuda", 0), dtype, tolerance)


def _nccl_ranks(rank: int, store: str, backend: str) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        ring = join_rings(rank, 2, 2, backend=backend)
        assert ring.backend == backend
        compare(ring, torch.device("cuda", rank), torch.float32 if backend == "torch" else torch.bfloat16,
                1e-5 if backend == "torch" else 3e-2)
    finally:
        dist.destroy_process_group()


def test_torch_backend_ring_of_two_over_nccl(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("a ring of 2 over nccl needs two GPUs (nccl cannot put two ranks on one GPU)")
    mp.spawn(_nccl_ranks, args=(str(tmp_path / "store"), "torch"), nprocs=2, join=True)


def test_ring_flash_attn_backend_ring_of_two(tmp_path):
    if importlib.util.find_spec("ring_flash_attn") is None:
        pytest.skip("ring_flash_attn is not installed (it needs flash-attn, which the lent GPU machines cannot build)")
    if torch.cuda.device_count() < 2:
        pytest.skip("a ring of 2 needs two GPUs")
    mp.spawn(_nccl_ranks, args=(str(tmp_path / "store"), "flash"), nprocs=2, join=True)
