"""Which weight-sync path a run takes (`cuda_ipc.same_gpus`), and CUDA IPC's refusals on the CPU.
The IPC transfer itself needs a GPU: tests/gpu/test_weight_sync_gpu.py."""

from __future__ import annotations

import pytest
import torch

from rlhf_train.distributed.cuda_ipc import gpu_uuid, same_gpus, share


@pytest.mark.parametrize("actors, engines, expected", [
    (["GPU-a", "GPU-b"], ["GPU-a", "GPU-b"], True),     # hybrid engine: engine i on actor rank i's GPU
    (["GPU-a", "GPU-b"], ["GPU-a"], True),              # fewer engines than actor ranks
    (["GPU-a", "GPU-b"], ["GPU-b", "GPU-a"], False),    # same GPUs, other pairing: rank i must hold engine i's
    (["GPU-a"], ["GPU-a", "GPU-a"], False),             # more engines than actor ranks
    (["GPU-a", "GPU-b"], ["GPU-c", "GPU-d"], False),    # engines on GPUs of their own
    ([None, None], [None, None], False),                # the CPU
    (["GPU-a"], [], False),
])
def test_ipc_only_when_every_engine_shares_its_actor_ranks_gpu(actors, engines, expected):
    assert same_gpus(actors, engines) is expected


def test_without_cuda_there_is_no_uuid_and_nothing_to_share():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert gpu_uuid() is None
    with pytest.raises(ValueError, match="CUDA IPC shares CUDA tensors only, got one on cpu"):
        share(torch.zeros(3))
