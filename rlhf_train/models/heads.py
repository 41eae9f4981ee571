"""Scalar heads for the critic (``value_head``) and the reward model (``score``): create, save, find.

Checkpoint convention (that of OpenRLHF and of Hugging Face ``*ForSequenceClassification``): the
head is a ``Linear(hidden_size, 1)`` whose weights sit in the model directory under the keys
``<name>.weight`` (and ``<name>.bias`` when the head has one), either in the directory's
``*.safetensors`` files or in ``<name>.safetensors`` that :func:`save_head` writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn


def new_head(hidden_size: int, *, seed: int, dtype: torch.dtype = torch.float32, bias: bool = False) -> nn.Linear:
    """A fresh ``Linear(hidden_size, 1)`` with weights ~ N(0, 1/(hidden_size+1)) (OpenRLHF's init),
    zero bias; depends only on ``seed`` and leaves the global RNG untouched."""
    head = nn.Linear(hidden_size, 1, bias=bias, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = torch.randn(head.weight.shape, generator=generator, dtype=torch.float32) / math.sqrt(hidden_size + 1)
        head.weight.copy_(weight)
        if bias:
            head.bias.zero_()
    return head


def save_head(head: nn.Linear, directory: str | Path, name: str) -> Path:
    """Write ``head`` as ``<directory>/<name>.safetensors`` with keys ``<name>.weight`` [/ ``.bias``]."""
    from safetensors.torch import save_file

    path = Path(directory) / f"{name}.safetensors"
    tensors = {f"{name}.{key}": value.detach().contiguous().cpu() for key, value in head.state_dict().items()}
    save_file(tensors, str(path))
    return path


def find_head_weights(directory: str | Path | None, name: str) -> dict[str, torch.Tensor] | None:
    """Return ``{"weight": [1, H], "bias": [1]?}`` of head ``name`` stored in ``directory``, or None when
    the directory (or no directory, for built-in models) holds no such keys. Looks at
    ``<name>.safetensors`` first, then every ``*.safetensors`` file."""
    if directory is None:
        return None
    from safetensors import safe_open

    directory = Path(directory)
    candidates = [directory / f"{name}.safetensors"] + sorted(directory.glob("*.safetensors"))
    for path in candidates:
        if not path.is_file():
            continue
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
            if f"{name}.weight" in keys:
                found = {"weight": handle.get_tensor(f"{name}.weight")}
                if f"{name}.bias" in keys:
                    found["bias"] = handle.get_tensor(f"{name}.bias")
                return found
    return None


def head_from_weights(weights: dict[str, torch.Tensor], hidden_size: int, *, dtype: torch.dtype, name: str) -> nn.Linear:
    """Build a ``Linear(hidden_size, 1)`` from :func:`find_head_weights` output; a shape mismatch
    raises ``ValueError`` naming the head."""
    weight = weights["weight"].reshape(-1, weights["weight"].shape[-1])
    if tuple(weight.shape) != (1, hidden_size):
        raise ValueError(f"stored {name}.weight has shape {tuple(weights['weight'].shape)}, expected (1, {hidden_size})")
    head = nn.Linear(hidden_size, 1, bias="bias" in weights, dtype=dtype)
    with torch.no_grad():
        head.weight.copy_(weight)
        if "bias" in weights:
            head.bias.copy_(weights["bias"].reshape(1))
    return head
