"""Ring groups: the sequence-parallel sub-groups of a role's process group.

A role of ``world`` ranks with ring size ``size`` has ``world / size`` rings of consecutive ranks::

    ring k = ranks [k·size, (k+1)·size)        data-parallel rank = rank // size
                                               position in the ring = rank % size

Every rank of one ring gets the same samples (the data-parallel share of ring k); each holds the
contiguous slice ``position`` of the packed row. ``torch.distributed.new_group`` is collective over
the whole default group, so every rank creates every ring, in ring order (:func:`join_rings`).
"""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("auto", "torch", "flash")


@dataclass(frozen=True)
class RingGroup:
    """This rank's ring: ``group`` (a torch.distributed group; None for a ring of one), this rank's
    ``position`` in it, its ``size``, the ring members' global ``ranks`` in ring order, the kernel
    ``backend`` ("torch" or "flash", resolved from "auto") and ``head_stride`` (KV heads per ring pass)."""

    group: object
    position: int
    size: int
    ranks: tuple[int, ...]
    backend: str = "torch"
    head_stride: int = 1

    @property
    def next_rank(self) -> int:
        """Global rank of the next ring member (K/V blocks travel to it)."""
        return self.ranks[(self.position + 1) % self.size]

    @property
    def previous_rank(self) -> int:
        """Global rank of the previous ring member (K/V blocks arrive from it)."""
        return self.ranks[(self.position - 1) % self.size]

    def local_slice(self, length: int) -> slice:
        """The contiguous part of a packed row of ``length`` tokens (a multiple of ``size``) this rank holds."""
        if length % self.size:
            raise ValueError(f"a packed row of {length} tokens does not split over a ring of {self.size}")
        chunk = length // self.size
        return slice(self.position * chunk, (self.position + 1) * chunk)


def no_ring(backend: str = "torch", head_stride: int = 1) -> RingGroup:
    """The ring of one (packing without sequence parallelism): no communication."""
    return RingGroup(group=None, position=0, size=1, ranks=(0,), backend=resolve_backend(backend, 1),
                     head_stride=head_stride)


def resolve_backend(backend: str, size: int) -> str:
    """``auto`` → ``flash`` when CUDA is available, the ring has more than one rank and
    ``ring_flash_attn`` imports; ``torch`` otherwise. ``torch`` and ``flash`` are kept as asked."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ring-attention backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    if size > 1 and torch.cuda.is_available() and importlib.util.find_spec("ring_flash_attn") is not None:
        return "flash"
    return "torch"


def join_rings(rank: int, world_size: int, size: int, backend: str = "auto", head_stride: int = 1) -> RingGroup:
    """Create every ring of the default process group (collective: all ``world_size`` ranks call it
    in the same order) and return this rank's. ``size`` must divide ``world_size``."""
    if size < 1 or world_size % size:
        raise ValueError(f"a ring size of {size} does not divide the role's {world_size} ranks")
    if size == 1:
        return no_ring(backend, head_stride)
    import torch.distributed as dist

    mine = None
    for start in range(0, world_size, size):
        ranks = tuple(range(start, start + size))
        group = dist.new_group(list(ranks))
        if rank in ranks:
            mine = RingGroup(group=group, position=rank - start, size=size, ranks=ranks,
                             backend=resolve_backend(backend, size), head_stride=head_stride)
    return mine
