"""The hybrid engine on one GPU (skipped without CUDA): everything colocated, the HF engine
sleeping and ZeRO-3 states offloaded between phases, memory read by NVML right after every move.
The actor's GPU memory drops when its states leave and comes back when they return; the engine's
drops when it sleeps; and the whole run's peak is below the same run without sleep/offload. The
weights go over CUDA IPC (engine and actor on one GPU)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import events, run_cli, run_info

pytestmark = pytest.mark.gpu
pytest.importorskip("ray", reason="the lent GPU machine needs ray and deepspeed carried over")
pytest.importorskip("deepspeed", reason="the lent GPU machine needs ray and deepspeed carried over")

MiB = 2**20
HYBRID = ('placement.mode="ray"', "placement.gpus_per_node=1", 'placement.colocate="all"', "train.max_steps=3",
          "deepspeed.zero_stage=3", "train.micro_train_batch_size=32", "algo.kl_coef=0")
SLEEP = ("rollout.enable_sleep=true", "deepspeed.enable_sleep=true")


def role_gpu_bytes(event: dict, role: str) -> int:
    return sum(p.get("used_bytes") or 0 for d in event["devices"] for p in d.get("processes") or []
               if p.get("role") == role)


def after_moves(run) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for e in events(run, "gpu"):
        if "transition" in e:
            t = e["transition"]
            out.setdefault((t["role"], t["from"], t["to"]), []).append(e)
    return out


def peak(run) -> int:
    return max(sum(d.get("used_bytes") or 0 for d in e["devices"]) for e in events(run, "gpu") if e.get("devices"))


def test_memory_per_phase_drops_when_the_engine_sleeps_and_states_offload(tmp_path, model_dir):
    on, off = tmp_path / "on", tmp_path / "off"
    assert run_cli(on, *HYBRID, *SLEEP, f'model.actor="{model_dir}"') == 0, run_info(on).get("reason")
    assert run_cli(off, *HYBRID, f'model.actor="{model_dir}"') == 0, run_info(off).get("reason")
    moves = after_moves(on)
    offloaded = role_gpu_bytes(moves[("actor", "idle", "offloaded")][-1], "actor")
    reloaded = role_gpu_bytes(moves[("actor", "offloaded", "idle")][-1], "actor")
    asleep = role_gpu_bytes(moves[("engine", "idle", "asleep")][-1], "engine")
    awake = role_gpu_bytes(moves[("engine", "asleep", "idle")][-1], "engine")
    weights = 100 * MiB  # 25 M float32 parameters
    assert reloaded - offloaded >= 3 * weights  # weights, gradients and Adam's two moments
    assert awake - asleep >= 0.9 * weights
    assert peak(on) < peak(off)
    assert "weights by cuda ipc" in (on / "train.log").read_text()


@pytest.fixture
def model_dir(tmp_path):
    from rlhf_train.models.tiny import save_tiny

    return save_tiny(tmp_path / "model", seed=1, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                     num_attention_heads=8, num_key_value_heads=4, head_dim=64, max_position_embeddings=256)
