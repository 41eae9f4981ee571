"""Actor → rollout-engine weight sync: a bucket plan, and the broadcast group that carries it.

After every update the actor's rank 0 broadcasts the policy's weights to every engine worker over
one collective group of `1 + engine workers` ranks (gloo on the CPU, NCCL on GPUs), separate from
the actor's own DeepSpeed group. Weights travel in *buckets*: the tensors of one dtype are laid end
to end in one flat buffer of at most `bucket_bytes` (a tensor larger than that gets a bucket of its
own), so a sync costs ⌈model bytes / bucket_bytes⌉ + (dtypes − 1) broadcasts at most, not one per
tensor. Every member knows the plan (names, shapes, offsets) before the first sync, so only the
flat buffers go over the wire.

Tensors shared under several names (tied embeddings) are sent once and received under every name.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from math import prod

import torch
from torch import nn

from rlhf_train.errors import RunError

DEFAULT_BUCKET_BYTES = 256 << 20


@dataclass(frozen=True)
class Slot:
    """One tensor of a bucket: every state-dict name it goes by, and its shape."""

    names: tuple[str, ...]
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class Bucket:
    """Tensors of one dtype laid end to end, in `slots` order."""

    dtype: str
    slots: tuple[Slot, ...]

    @property
    def numel(self) -> int:
        return sum(s.numel for s in self.slots)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def to_wire(self) -> list:
        """Plain lists and strings (what vLLM's RPC and Ray carry without pickling classes)."""
        return [self.dtype, [[list(s.names), list(s.shape)] for s in self.slots]]

    @classmethod
    def from_wire(cls, wire: list) -> Bucket:
        dtype, slots = wire
        return cls(dtype, tuple(Slot(tuple(names), tuple(shape)) for names, shape in slots))


def module_slots(module: nn.Module) -> list[tuple[Slot, str]]:
    """Each distinct tensor of `module.state_dict()` once, with all its names and its dtype name.
    Under ZeRO-3 a parameter's local tensor is a shard; its full shape is `ds_shape`."""
    names: dict[int, list[str]] = {}
    tensors: dict[int, torch.Tensor] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
        tensors[id(tensor)] = tensor
    return [(Slot(tuple(names[key]), tuple(getattr(t, "ds_shape", t.shape))), str(t.dtype).removeprefix("torch."))
            for key, t in tensors.items()]


def plan_buckets(slots: Iterable[tuple[Slot, str]], bucket_bytes: int) -> list[Bucket]:
    """Group slots by dtype, in order, into buckets of at most `bucket_bytes` (a slot larger than
    that alone). Deterministic: every rank computing it from the same module gets the same plan."""
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    by_dtype: dict[str, list[Slot]] = {}
    for slot, dtype in slots:
        by_dtype.setdefault(dtype, []).append(slot)
    buckets = []
    for dtype, members in by_dtype.items():
        itemsize = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
        current: list[Slot] = []
        size = 0
        for slot in members:
            if current and size + slot.numel * itemsize > bucket_bytes:
                buckets.append(Bucket(dtype, tuple(current)))
                current, size = [], 0
            current.append(slot)
            size += slot.numel * itemsize
        if current:
            buckets.append(Bucket(dtype, tuple(current)))
    return buckets


def flatten(bucket: Bucket, tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The bucket's tensors (in slot order) as one flat buffer on `device`."""
    flat = torch.empty(bucket.numel, dtype=bucket.torch_dtype, device=device)
    offset = 0
    for slot, tensor in zip(bucket.slots, tensors, strict=True):
        if tuple(tensor.shape) != slot.shape:
            raise RunError(f"weight sync: {slot.names[0]} has shape {tuple(tensor.shape)}, the plan says {slot.shape}")
        flat[offset:offset + slot.numel].copy_(tensor.reshape(-1))
        offset += slot.numel
    return flat


def unflatten(bucket: Bucket, flat: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, view of `flat`) for every name of every slot: a tied tensor once per name."""
    offset = 0
    for slot in bucket.slots:
        view = flat[offset:offset + slot.numel].view(slot.shape)
        for name in slot.names:
            yield name, view
        offset += slot.numel


class BroadcastGroup:
    """This process's membership in the weight-sync group: rank 0 (the actor's rank 0) sends,
    every other rank receives. Meets at `address:port`, where rank 0 hosts the store."""

    def __init__(self, address: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float):
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=timeout_s)
        try:
            store = dist.TCPStore(address, port, world_size, is_master=rank == 0, timeout=timeout)
        except (RuntimeError, OSError) as error:
            raise RunError(f"weight-sync group: rank {rank} of {world_size} could not meet at {address}:{port} "
                           f"within {timeout_s:g} s: {error}") from error
        store = dist.PrefixStore("rlhf-weight-sync", store)
        self.rank, self.world_size, self.backend = rank, world_size, backend
        if backend == "nccl":
            self.group = dist.ProcessGroupNCCL(store, rank, world_size)
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.group = dist.ProcessGroupGloo(store, rank, world_size, timeout)
            self.device = torch.device("cpu")

    def send(self, flat: torch.Tensor) -> None:
        self.group.broadcast(flat, 0).wait()

    def receive(self, bucket: Bucket) -> torch.Tensor:
        flat = torch.empty(bucket.numel, dtype=bucket.torch_dtype, device=self.device)
        self.group.broadcast(flat, 0).wait()
        return flat


def receive_state(group: BroadcastGroup, plan: list[Bucket]) -> dict[str, torch.Tensor]:
    """Every bucket of `plan` from the group, as one state dict (views of the received buffers)."""
    return {name: tensor for bucket in plan for name, tensor in unflatten(bucket, group.receive(bucket))}
