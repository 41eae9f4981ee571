"""presets/tiny-cpu-ring2.toml through Ray: a ring of 2 actor (and reference) processes over gloo
trains end to end and follows the trajectory of one packed process (ring of 1); with ZeRO-3
offload, engine sleep and everything colocated, the rings made at start-up survive every
offload/reload and sleep/wake of the hybrid engine's step (the state sequence is checked)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from .conftest import events, metric_series, run_cli, run_info

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

PRESET = str(Path(__file__).resolve().parents[2] / "presets" / "tiny-cpu-ring2.toml")
RAY = ("placement.mode=\"ray\"",)


HYBRID = ("deepspeed.zero_stage=3", "deepspeed.enable_sleep=true", "rollout.enable_sleep=true",
          "placement.colocate=\"all\"")
ONE_STEP = [("engine", "idle", "generating"), ("engine", "generating", "idle"), ("engine", "idle", "asleep"),
            ("actor", "offloaded", "idle"), ("actor", "idle", "training"), ("actor", "training", "idle"),
            ("engine", "asleep", "idle"), ("actor", "idle", "offloaded")]


@pytest.mark.timeout(600)
def test_ring_of_two_trains_like_one_packed_process_through_the_hybrid_engine(tmp_path):
    common = (*RAY, "train.max_steps=2", *HYBRID)
    assert run_cli(tmp_path / "ring", *common, preset=PRESET) == 0
    assert run_cli(tmp_path / "one", *common, "ring_attention.size=1", "placement.actor_workers=1",
                   preset=PRESET) == 0
    ring_run = tmp_path / "ring"
    (placed,) = [e for e in events(ring_run, "log") if "workers" in e]
    assert [w["role"] for w in placed["workers"]] == ["actor", "actor", "reference", "reference", "engine"]
    assert run_info(ring_run)["status"] == "finished"
    # the rings made at start-up lived through every offload/reload and sleep/wake of both steps
    # (what the run does after its last step, e.g. the final checkpoint, is not this test's subject)
    moves = [(e["role"], e["from"], e["to"]) for e in events(ring_run, "state")]
    assert moves[:1 + 2 * len(ONE_STEP)] == [("actor", "idle", "offloaded")] + ONE_STEP + ONE_STEP
    for name in ("train/policy_loss", "train/kl", "reward/mean", "train/grad_norm", "train/entropy"):
        ring, one = metric_series(ring_run, name), metric_series(tmp_path / "one", name)
        assert len(ring) == 2 and all(math.isfinite(x) for x in ring), name
        assert ring == pytest.approx(one, rel=1e-4, abs=1e-6), name
