"""The DeepSpeed roles on one CUDA GPU (nccl, world size 1): fp32 ZeRO-2 follows the local CPU
actor, ZeRO-3 bf16 trains and its offload frees GPU memory that reload takes back, a ZeRO-3 bf16
reference scores like the fp32 model. Skipped without CUDA (tests/conftest.py)."""

from __future__ import annotations

import math
import os

import pytest
import torch

from rlhf_train.config.schema import Preset
from rlhf_train.models.actor import Actor
from rlhf_train.models.tiny import build_tiny_model
from rlhf_train.roles import ActorRole, ReferenceRole
from tests.integration.test_deepspeed_roles import FITS, free_port, make_batch, make_preset, train_roles

CONTINUOUS = ("policy_loss", "kl_loss", "entropy", "critic_loss")


@pytest.fixture(scope="module")
def strategy():
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                      LOCAL_RANK="0")
    from rlhf_train.distributed.strategy import DeepSpeedStrategy

    yield DeepSpeedStrategy()
    torch.distributed.destroy_process_group()


def bf16_zero3() -> Preset:
    raw = make_preset(3, 1).model_dump()
    raw["deepspeed"]["bf16"] = True
    return Preset.model_validate(raw, strict=False)


def test_the_rank_uses_nccl_on_the_gpu(strategy):
    assert torch.distributed.get_backend() == "nccl"
    assert strategy.device.type == "cuda"


def test_zero2_fp32_on_the_gpu_follows_the_local_cpu_actor(strategy):
    gpu, _ = train_roles(make_preset(2, 1), strategy)
    cpu, _ = train_roles(make_preset(2, 1))
    for role in ("actor", "critic"):
        for fit, (g, c) in enumerate(zip(gpu[role], cpu[role])):
            for name in CONTINUOUS:
                if name in c:
                    assert g[name] == pytest.approx(c[name], rel=1e-2, abs=1e-4), f"{role} fit {fit}: {name}"


def test_zero3_bf16_offload_frees_gpu_memory_and_reload_takes_it_back(strategy):
    actor = ActorRole(Actor(build_tiny_model(0)), bf16_zero3(), 2 * FITS, strategy)
    batch = make_batch()
    actor.fit(batch, kl_coef=0.1, seed=0)
    parameters = sum(p.ds_numel for p in actor.optimized.engine.module.parameters())
    before = torch.cuda.memory_allocated()
    moved = actor.offload()
    print(f"\noffload: {moved.device_bytes / 2**20:.2f} MiB in {moved.seconds * 1e3:.1f} ms "
          f"({parameters:,} parameters)")
    assert moved.device_bytes >= 12 * parameters  # fp32 master weights and both Adam moments at least
    assert torch.cuda.memory_allocated() == before - moved.device_bytes
    back = actor.reload()
    print(f"reload: {back.device_bytes / 2**20:.2f} MiB in {back.seconds * 1e3:.1f} ms")
    assert back.device_bytes >= 12 * parameters
    assert math.isfinite(actor.fit(batch, kl_coef=0.1, seed=1)["policy_loss"])


def test_zero3_bf16_reference_scores_like_the_fp32_model(strategy):
    batch = make_batch()
    got = ReferenceRole(Actor(build_tiny_model(0)), bf16_zero3(), strategy).log_probs(batch)
    assert got.device.type == "cpu"
    torch.testing.assert_close(got, batch.old_log_probs, rtol=0, atol=0.05)
