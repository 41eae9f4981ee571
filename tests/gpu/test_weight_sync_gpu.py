"""Weight sync on a CUDA GPU: a bucket shared by CUDA IPC is read by another process on the same
GPU (and the HF engine loads a whole model that way), and the broadcast group runs over NCCL.
Skipped without CUDA (tests/conftest.py)."""

from __future__ import annotations

import multiprocessing as mp

import torch

from rlhf_train.distributed.cuda_ipc import gpu_uuid, share
from rlhf_train.distributed.weight_sync import flatten, module_slots, plan_buckets
from rlhf_train.models.tiny import build_tiny_model


def _engine_side(handles, plan, queue) -> None:
    from rlhf_train.rollout.hf_engine import HFEngine

    engine = HFEngine(build_tiny_model(seed=99).cuda(), pad_id=0, eos_ids={2})
    for bucket, handle in zip(plan, handles):
        engine.receive_ipc(bucket, handle)
    engine.finish_ipc()
    queue.put({k: v.cpu().numpy() for k, v in engine.model.state_dict().items()})
    queue.put(gpu_uuid())


def test_the_hf_engine_loads_a_model_shared_bucket_by_bucket_over_cuda_ipc():
    model = build_tiny_model(seed=5).cuda()
    state = model.state_dict()
    plan = plan_buckets(module_slots(model), bucket_bytes=256 << 10)
    flats = [flatten(b, [state[s.names[0]] for s in b.slots], torch.device("cuda", 0)) for b in plan]
    torch.cuda.synchronize()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_engine_side, args=([share(f) for f in flats], plan, queue))
    proc.start()
    received, uuid = queue.get(timeout=300), queue.get(timeout=60)
    proc.join(timeout=60)
    assert proc.exitcode == 0 and uuid == gpu_uuid()
    assert sorted(received) == sorted(state)
    for name, tensor in state.items():
        assert torch.equal(torch.from_numpy(received[name]), tensor.cpu()), name


def test_the_broadcast_group_runs_over_nccl():
    import pytest

    from tests.unit.test_weight_sync import broadcast_over

    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL needs a GPU per rank: two GPUs (one GPU is the CUDA IPC path, tested above)")
    model = build_tiny_model(seed=6)
    state = model.state_dict()
    (received,) = broadcast_over("nccl", 2, plan_buckets(module_slots(model), bucket_bytes=256 << 10), state)
    assert all(torch.equal(received[k], state[k]) for k in state)
