"""Weight sync between processes on the same GPU without copying through a collective: the
sender shares a CUDA buffer by handle (CUDA IPC, `torch.multiprocessing.reductions`), the receiver
maps that same memory and copies out of it (the hybrid engine: every model on every GPU, so each
engine sits on its actor rank's GPU).

A handle names its device by index *as the sending process numbers devices*; the receiver may
number the same GPU differently (its own CUDA_VISIBLE_DEVICES), so it opens the handle on its own
index of that GPU. Whether two processes share a GPU is decided by the GPUs' UUIDs, never by
indices. The sender must keep the buffer alive until the receiver has copied it.
"""

from __future__ import annotations

import torch

DEVICE_ARG = 6
"""Position of the device index in `rebuild_cuda_tensor`'s arguments."""


def gpu_uuid() -> str | None:
    """This process's current GPU's UUID; None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)


def same_gpus(actor_uuids: list[str | None], engine_uuids: list[str | None]) -> bool:
    """True when engine i shares actor rank i's GPU for every engine (CUDA IPC can carry every
    engine's weights); False without GPUs, with more engines than actor ranks, or any mismatch."""
    if not engine_uuids or len(engine_uuids) > len(actor_uuids):
        return False
    return all(e is not None and e == a for a, e in zip(actor_uuids, engine_uuids))


def share(tensor: torch.Tensor) -> tuple:
    """A picklable handle to a CUDA tensor's memory (what `open_shared` maps in another process)."""
    from torch.multiprocessing.reductions import reduce_tensor

    if not tensor.is_cuda:
        raise ValueError(f"CUDA IPC shares CUDA tensors only, got one on {tensor.device}")
    return reduce_tensor(tensor)


def open_shared(handle: tuple, device_index: int) -> torch.Tensor:
    """The tensor behind `handle`, mapped on this process's device `device_index` (the same GPU)."""
    rebuild, args = handle
    args = list(args)
    args[DEVICE_ARG] = device_index
    return rebuild(*args)
