"""The DeepSpeed strategy: one rank of a data-parallel group, as the `roles.Backend` its roles run on.

Per rank (e.g. inside one Ray actor), with MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and
LOCAL_RANK set::

    strategy = DeepSpeedStrategy()                # joins the process group (gloo on CPU, nccl on CUDA)
    actor = ActorRole(Actor(model), preset, total_optimizer_steps, strategy)
    actor.fit(global_batch, kl_coef, seed)        # every rank, the same global batch
    actor.offload(); actor.reload()               # ZeRO-3

The process group's world size is the role's worker count: data-parallel ranks × ring size
(`[ring_attention].size`); the rings (`rlhf_train.attention.group.join_rings`) are created right
after the group, before anything else in the process makes a group (e.g. a weight-sync group).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from rlhf_train.attention.group import join_rings
from rlhf_train.config.schema import Preset, RingAttentionConfig
from rlhf_train.config.topology import data_parallel_size
from rlhf_train.distributed.ds_config import deepspeed_config
from rlhf_train.distributed.ds_engine import TrainedEngine, frozen_model, import_deepspeed
from rlhf_train.errors import RunError


def init_distributed() -> None:
    """Join the default process group from the environment (MASTER_ADDR, MASTER_PORT, RANK,
    WORLD_SIZE, LOCAL_RANK): nccl on CUDA device LOCAL_RANK, gloo on the CPU. Nothing to do when
    already joined."""
    deepspeed = import_deepspeed()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)


class DeepSpeedStrategy:
    """This rank of the default process group; makes DeepSpeed engines for the roles it hosts."""

    def __init__(self, ring: RingAttentionConfig | None = None):
        init_distributed()
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
        ring = ring or RingAttentionConfig()
        self.ring = join_rings(self.rank, self.world_size, ring.size, ring.backend, ring.head_stride)

    def _config(self, preset: Preset, role: str) -> dict:
        expected = data_parallel_size(preset, role)
        if expected * self.ring.size != self.world_size:
            raise RunError(f"the {role} runs on {self.world_size} ranks in rings of {self.ring.size} but the preset "
                           f"asks for {expected} data-parallel ranks ([placement] workers / [ring_attention].size)")
        return deepspeed_config(preset, role, expected, self.ring.size)

    def trained(self, module: nn.Module, role: str, preset: Preset, total_steps: int) -> TrainedEngine:
        return TrainedEngine(module, self._config(preset, role), preset.train, total_steps)

    def frozen(self, module: nn.Module, role: str, preset: Preset):
        return frozen_model(module, self._config(preset, role), self.device)

    def sum_over_ranks(self, values: list[float]) -> list[float]:
        summed = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(summed)
        return summed.tolist()
