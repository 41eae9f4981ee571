"""The weight-sync bucket plan and the broadcast group (`distributed/weight_sync.py`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlhf_train.distributed.weight_sync import (BroadcastGroup, Bucket, Slot, flatten, module_slots, plan_buckets,
                                                receive_state, unflatten)
from rlhf_train.errors import RunError
from rlhf_train.models.tiny import build_tiny_model


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight
        self.norm = nn.LayerNorm(4).to(torch.float64)


def test_a_tied_tensor_is_one_slot_under_both_names_and_dtypes_get_their_own_buckets():
    slots = module_slots(Tied())
    assert slots == [(Slot(("embed.weight", "head.weight"), (10, 4)), "float32"),
                     (Slot(("norm.weight",), (4,)), "float64"), (Slot(("norm.bias",), (4,)), "float64")]
    plan = plan_buckets(slots, bucket_bytes=1 << 20)
    assert [(b.dtype, b.numel) for b in plan] == [("float32", 40), ("float64", 8)]


def test_buckets_fill_up_to_the_byte_limit_and_an_oversized_tensor_travels_alone():
    slots = [(Slot((f"t{i}",), (n,)), "float32") for i, n in enumerate([10, 10, 30, 5, 5, 5])]
    plan = plan_buckets(slots, bucket_bytes=80)  # 20 float32
    assert [[s.names[0] for s in b.slots] for b in plan] == [["t0", "t1"], ["t2"], ["t3", "t4", "t5"]]
    with pytest.raises(ValueError, match="bucket_bytes must be positive"):
        plan_buckets(slots, bucket_bytes=0)


def test_flatten_then_unflatten_gives_back_every_tensor_under_every_name():
    model = Tied()
    state = model.state_dict()
    plan = plan_buckets(module_slots(model), bucket_bytes=64)
    out = {}
    for bucket in plan:
        tensors = [state[s.names[0]] for s in bucket.slots]
        out.update(unflatten(bucket, flatten(bucket, tensors, torch.device("cpu"))))
    assert sorted(out) == sorted(state)
    for name, tensor in state.items():
        assert torch.equal(out[name], tensor) and out[name].dtype == tensor.dtype


def test_a_tensor_of_the_wrong_shape_is_an_error_naming_it():
    bucket = Bucket("float32", (Slot(("w",), (2, 3)),))
    with pytest.raises(RunError, match=r"weight sync: w has shape \(3, 2\), the plan says \(2, 3\)"):
        flatten(bucket, [torch.zeros(3, 2)], torch.device("cpu"))


def test_the_wire_form_is_plain_lists_and_round_trips():
    plan = plan_buckets(module_slots(build_tiny_model()), bucket_bytes=256 << 10)
    wire = [b.to_wire() for b in plan]
    assert all(type(w) is list and type(w[0]) is str for w in wire)
    assert [Bucket.from_wire(w) for w in wire] == plan


def _member(rank: int, world: int, port: int, backend: str, plan: list[Bucket], state: dict, queue) -> None:
    if backend == "nccl":
        torch.cuda.set_device(rank)  # NCCL refuses two ranks on one GPU
    group = BroadcastGroup("127.0.0.1", port, rank, world, backend, timeout_s=120)
    if rank == 0:
        for bucket in plan:
            group.send(flatten(bucket, [state[s.names[0]] for s in bucket.slots], group.device))
    else:
        received = receive_state(group, plan)
        queue.put({name: t.cpu().numpy().copy() for name, t in received.items()})  # by value, not a shared fd
    if backend == "nccl":
        torch.cuda.synchronize()


def broadcast_over(backend: str, world: int, plan: list[Bucket], state: dict) -> list[dict]:
    """Spawn `world` processes in one broadcast group; rank 0 sends `state` by `plan`; what every
    other rank received."""
    import multiprocessing as mp

    from rlhf_train.distributed.worker import free_port

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_member, args=(r, world, port, backend, plan, state, queue)) for r in range(world)]
    for p in procs:
        p.start()
    received = [queue.get(timeout=300) for _ in range(world - 1)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return [{name: torch.from_numpy(array) for name, array in got.items()} for got in received]


@pytest.mark.slow
def test_rank_zero_broadcasts_every_bucket_to_two_receivers_over_gloo():
    model = build_tiny_model(seed=5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plan = plan_buckets(module_slots(model), bucket_bytes=200 << 10)
    assert len(plan) >= 4
    for got in broadcast_over("gloo", 3, plan, state):
        assert sorted(got) == sorted(state)
        assert all(torch.equal(got[k], state[k]) for k in state)


def test_a_receiver_with_nobody_to_meet_times_out_with_a_clear_error():
    from rlhf_train.distributed.worker import free_port

    with pytest.raises(RunError, match=r"weight-sync group: rank 1 of 2 could not meet at 127\.0\.0\.1:\d+ within 1 s"):
        BroadcastGroup("127.0.0.1", free_port(), 1, 2, "gloo", timeout_s=1)
