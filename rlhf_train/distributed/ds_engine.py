"""One model behind a DeepSpeed engine on this rank: trained (`TrainedEngine`, the `roles.Trainable`
of a data-parallel rank) or frozen (`frozen_engine`).

The optimizer is the one the config names (FusedAdam, or DeepSpeedCPUAdam with optimizer offload);
the learning rate follows `roles.lr_schedule`, stepped by DeepSpeed at each optimizer step.
Gradients are averaged over ranks and accumulation steps by DeepSpeed, so `backward` of a
micro-batch mean loss and `step` give the gradient of the mean over the whole optimizer step.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from rlhf_train.config.schema import TrainConfig
from rlhf_train.errors import RunError
from rlhf_train.roles import Moved, lr_schedule


def import_deepspeed():
    """`deepspeed`, imported quietly: the accelerator named up front where there is no CUDA (no
    detection warning), DeepSpeed's logger at WARNING, and torch's warnings about the deprecated
    collectives DeepSpeed calls (`all_gather_into_tensor`, ...) silenced.

    DeepSpeed's JIT-built ops are cached inside this Python environment (`<prefix>/torch_extensions`
    unless TORCH_EXTENSIONS_DIR says otherwise): the shared ~/.cache default makes two environments
    rebuild each other's ops, and a worker then waits minutes on the other's build lock."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    import deepspeed
    from deepspeed.utils import logger

    logger.setLevel(logging.WARNING)
    return deepspeed


def _device_bytes() -> int | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated()


def _timed_move(move: Callable[[], None], sign: int) -> Moved:
    """Run `move`; its wall time and the change of allocated CUDA bytes × `sign`."""
    before, t0 = _device_bytes(), time.perf_counter()
    move()
    after = _device_bytes()
    return Moved(time.perf_counter() - t0, None if before is None else sign * (before - after))


class TrainedEngine:
    """`module` trained through `deepspeed.initialize(config)` with the `roles.lr_schedule` over
    `total_steps` optimizer steps; the `roles.Trainable` contract."""

    def __init__(self, module: nn.Module, config: dict, train: TrainConfig, total_steps: int):
        deepspeed = import_deepspeed()
        params = [p for p in module.parameters() if p.requires_grad]
        self.engine, *_ = deepspeed.initialize(
            model=module, model_parameters=params, config=config,
            lr_scheduler=lambda optimizer: lr_schedule(optimizer, train, total_steps))
        zero = config["zero_optimization"]
        self.stage = zero["stage"]
        self.params_on_cpu = zero.get("offload_param", {}).get("device", "none") != "none"

    def __call__(self, *args, **kwargs):
        return self.engine(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        """∇(loss / accumulation steps), reduced over ranks at the accumulation boundary."""
        self.engine.backward(loss)
        if not self.engine.is_gradient_accumulation_boundary():
            self.engine.step()  # inside the accumulation: only advances DeepSpeed's micro-step counter

    def step(self) -> float:
        if not self.engine.is_gradient_accumulation_boundary():
            raise RuntimeError("step() before the last micro-batch of the optimizer step")
        norm = self._stage0_norm() if self.stage == 0 else None
        self.engine.step()
        return float(norm if norm is not None else self.engine.get_global_grad_norm())

    def _stage0_norm(self) -> torch.Tensor:
        """Without ZeRO DeepSpeed does not report the norm; the gradients are already all-reduced here."""
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads)

    @property
    def lr(self) -> float:
        return self.engine.get_lr()[0]

    @property
    def module(self) -> nn.Module:
        return self.engine.module

    def gathered(self, tensors: list[torch.Tensor]):
        """ZeRO-3 parameters among `tensors` gathered together for the context (`roles.Trainable`)."""
        deepspeed = import_deepspeed()
        params = [t for t in tensors if hasattr(t, "ds_id")]
        return deepspeed.zero.GatheredParameters(params, enabled=bool(params))

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The module's state dict, on the CPU, on rank 0; {} on other ranks. Under ZeRO-3 each
        parameter is gathered in turn (`GatheredParameters`), so every rank must call this and the
        peak extra memory is one parameter."""
        rank0 = torch.distributed.get_rank() == 0
        copies: dict[int, torch.Tensor] = {}
        state = {}
        for name, tensor in self.engine.module.state_dict(keep_vars=True).items():
            if id(tensor) not in copies:  # tied weights appear under several names
                with self.gathered([tensor]):
                    copies[id(tensor)] = tensor.detach().to("cpu", copy=True) if rank0 else None
            if rank0:
                state[name] = copies[id(tensor)]
        return state

    def _move(self, move: Callable[[], None], sign: int) -> Moved:
        if self.stage != 3:
            raise RunError(f"offloading DeepSpeed states needs ZeRO-3; [deepspeed].zero_stage is {self.stage}")
        if self.params_on_cpu:
            raise RunError("[deepspeed].offload_params = true already keeps the parameters on the CPU; "
                           "offloading between phases (enable_sleep) needs it off")
        try:
            return _timed_move(move, sign)
        except AssertionError as error:  # DeepSpeed states its limits as assertions
            raise RunError(f"DeepSpeed cannot offload this engine's states: {error}") from error

    def offload(self) -> Moved:
        """Move parameters, gradients and optimizer state to (pinned) CPU memory with
        `engine.offload_states()` (with offload_optimizer, the optimizer side is on the CPU already
        and only the parameters and gradients move)."""
        return self._move(self.engine.offload_states, sign=1)

    def reload(self) -> Moved:
        """Bring them back to the accelerator: `engine.reload_states()`."""
        return self._move(self.engine.reload_states, sign=-1)

    def save_state(self, directory: Path) -> None:
        """DeepSpeed's own checkpoint under `directory/engine` (every rank writes its ZeRO shards of
        the weights and optimizer state; the schedule comes along). Several nodes need `directory`
        on a shared filesystem."""
        self.engine.save_checkpoint(str(directory), tag="engine")

    def load_state(self, directory: Path) -> None:
        loaded, _ = self.engine.load_checkpoint(str(directory), tag="engine", load_optimizer_states=True,
                                                load_lr_scheduler_states=True)
        if loaded is None:
            raise RunError(f"no DeepSpeed checkpoint in {directory}/engine (was it written with another "
                           "[placement].mode?); resume from a checkpoint this placement wrote")


def frozen_model(module: nn.Module, config: dict, device: torch.device) -> Callable:
    """`module` for inference only (no gradients), called like the module: under ZeRO-3 a DeepSpeed
    engine that shards its parameters over the ranks; otherwise the module itself on `device`
    (cast to bfloat16 when the config enables bf16), with no engine around it."""
    module.requires_grad_(False)
    if config["zero_optimization"]["stage"] == 3:
        engine, *_ = import_deepspeed().initialize(model=module, config=config)
        return engine
    return module.to(device, torch.bfloat16 if config["bf16"]["enabled"] else None)
