"""The tiny preset through Ray and DeepSpeed, in this process's Ray cluster (one per module):
every role in its own process, 1 vs 2 actor ranks, colocation, CPU optimizer offload, and a
placement that cannot be satisfied."""

from __future__ import annotations

import math
import os
import time

import pytest

from rlhf_train.telemetry.runs import process_alive

from .conftest import events, metric_series, run_cli, run_info

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

RAY = ("placement.mode=\"ray\"",)


def placed_workers(run_dir) -> list[dict]:
    (placed,) = [e for e in events(run_dir, "log") if "workers" in e]
    return placed["workers"]


def test_ppo_with_every_role_in_its_own_process(tmp_path):
    from rlhf_train.models.tiny import save_tiny

    rm = save_tiny(tmp_path / "rm", seed=3)
    run = tmp_path / "run"
    assert run_cli(run, *RAY, "train.max_steps=2", "algo.name=\"ppo\"", "reward.kind=\"model\"",
                   f"reward.model=\"{rm}\"") == 0
    workers = placed_workers(run)
    assert [(w["role"], w["rank"]) for w in workers] == [
        ("actor", 0), ("reference", 0), ("critic", 0), ("reward", 0), ("engine", 0)]
    pids = [w["pid"] for w in workers]
    assert len(set(pids)) == 5 and os.getpid() not in pids
    assert run_info(run)["status"] == "finished"
    losses = metric_series(run, "train/critic_loss")
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert (run / "checkpoints" / "step_000002" / "config.json").is_file()
    assert sorted(p.name for p in (run / "workers").iterdir()) == [
        "actor-0.log", "critic-0.log", "engine-0.log", "reference-0.log", "reward-0.log"]


@pytest.mark.parametrize("stage", [2, 3])
def test_two_actor_ranks_follow_the_one_rank_trajectory(tmp_path, stage):
    common = (*RAY, "train.max_steps=3", "train.micro_train_batch_size=32", f"deepspeed.zero_stage={stage}")
    assert run_cli(tmp_path / "one", *common) == 0
    assert run_cli(tmp_path / "two", *common, "placement.actor_workers=2") == 0
    assert [w["role"] for w in placed_workers(tmp_path / "two")] == ["actor", "actor", "reference", "reference",
                                                                     "engine"]
    for name in ("train/policy_loss", "train/kl", "reward/mean", "train/grad_norm"):
        one, two = metric_series(tmp_path / "one", name), metric_series(tmp_path / "two", name)
        assert two == pytest.approx(one, rel=1e-4, abs=1e-6), name


def test_colocate_all_with_cpu_optimizer_offload(tmp_path):
    run = tmp_path / "run"
    assert run_cli(run, *RAY, "train.max_steps=2", "placement.colocate=\"all\"", "deepspeed.zero_stage=2",
                   "deepspeed.offload_optimizer=true") == 0
    assert run_info(run)["status"] == "finished"
    assert len(metric_series(run, "train/policy_loss")) == 2
    assert len({w["pid"] for w in placed_workers(run)}) == 3


def test_a_placement_ray_cannot_satisfy_fails_fast_naming_the_resource(tmp_path):
    run = tmp_path / "run"
    started = time.monotonic()
    assert run_cli(run, *RAY, "placement.cpus_per_worker=64", "placement.ready_timeout_s=3") == 1
    assert time.monotonic() - started < 30
    reason = run_info(run)["reason"]
    assert reason.startswith("Ray could not place the workers of plan node0 (actor, reference, engine) "
                             "(3 bundle(s), CPU 192 in all) within 3 s: "
                             "CPU: needs 192 on one node, the largest node has 8."), reason
    assert events(run)[-1] == {**events(run)[-1], "type": "end", "status": "failed", "reason": reason}


def state_moves(run_dir) -> list[tuple[str, str, str]]:
    return [(e["role"], e["from"], e["to"]) for e in events(run_dir, "state")]


def test_enable_sleep_offloads_deepspeed_states_while_the_engine_generates(tmp_path):
    run = tmp_path / "run"
    assert run_cli(run, *RAY, "train.max_steps=2", "deepspeed.zero_stage=3", "deepspeed.enable_sleep=true") == 0
    one_step = [("engine", "idle", "generating"), ("engine", "generating", "idle"), ("actor", "offloaded", "idle"),
                ("actor", "idle", "training"), ("actor", "training", "idle"), ("actor", "idle", "offloaded")]
    final_save = [("actor", "offloaded", "idle"), ("actor", "idle", "offloaded")]  # DeepSpeed saves resident states
    assert state_moves(run) == [("actor", "idle", "offloaded")] + one_step + one_step + final_save
    offload = metric_series(run, "time/offload_s")
    assert len(offload) == 2 and all(s > 0 for s in offload)


@pytest.mark.timeout(600)
def test_the_hybrid_engine_sleeps_the_hf_engine_and_offloads_zero3_states(tmp_path):
    """Everything colocated, engine sleep and DeepSpeed sleep: the full sequence of
    `distributed/hybrid.py`, for real, with the critic (ppo): the HF engine releases its weights
    when it sleeps and gets them back from the weight sync before it generates again."""
    run = tmp_path / "run"
    assert run_cli(run, *RAY, "train.max_steps=2", "algo.name=\"ppo\"", "deepspeed.zero_stage=3",
                   "deepspeed.enable_sleep=true", "rollout.enable_sleep=true", "placement.colocate=\"all\"") == 0
    assert run_info(run)["status"] == "finished"
    one_step = [
        ("engine", "idle", "generating"), ("engine", "generating", "idle"), ("engine", "idle", "asleep"),
        ("actor", "offloaded", "idle"), ("critic", "offloaded", "idle"),
        ("critic", "idle", "training"), ("critic", "training", "idle"), ("critic", "idle", "offloaded"),
        ("actor", "idle", "training"), ("actor", "training", "idle"),
        ("engine", "asleep", "idle"), ("actor", "idle", "offloaded")]
    settle = [("actor", "idle", "offloaded"), ("critic", "idle", "offloaded")]
    final_save = [("actor", "offloaded", "idle"), ("critic", "offloaded", "idle"),
                  ("actor", "idle", "offloaded"), ("critic", "idle", "offloaded")]
    assert state_moves(run) == settle + one_step + one_step + final_save
    memory_moves = [m for m in state_moves(run) if not {"generating", "training"} & set(m[1:])]
    sampled = [(e["transition"]["role"], e["transition"]["from"], e["transition"]["to"])
               for e in events(run, "gpu") if "transition" in e]
    assert sampled == memory_moves  # memory sampled right after every sleep, wake, offload and reload
    assert all(s > 0 for s in metric_series(run, "time/offload_s"))
    assert len(metric_series(run, "train/policy_loss")) == 2
    assert all(math.isfinite(x) for x in metric_series(run, "reward/mean"))


@pytest.mark.timeout(600)
def test_zero3_reference_on_ranks_that_do_not_divide_the_rollout(tmp_path):
    """128 samples over 3 ZeRO-3 reference ranks: equal padded parts, so no rank waits forever."""
    common = (*RAY, "train.max_steps=2", "deepspeed.zero_stage=3", "train.micro_train_batch_size=32")
    assert run_cli(tmp_path / "one", *common) == 0
    assert run_cli(tmp_path / "three", *common, "placement.ref_workers=3") == 0
    assert metric_series(tmp_path / "three", "train/kl") == pytest.approx(
        metric_series(tmp_path / "one", "train/kl"), rel=1e-4, abs=1e-6)


def test_the_placement_groups_ray_holds_are_the_plan_check_prints(tmp_path):
    from ray.util import placement_group_table

    from rlhf_train.config import validate_preset_dict
    from rlhf_train.config.plan import make_plan
    from rlhf_train.distributed.build import RayRun
    from rlhf_train.distributed.placement import group_specs

    raw = {"schema_version": 1, "run": {"name": "pg"}, "algo": {"name": "ppo"},
           "placement": {"mode": "ray", "actor_workers": 2, "colocate": "actor_ref", "cpus_per_worker": 0.25}}
    preset = validate_preset_dict(raw).preset
    plan = make_plan(preset).placement
    run = RayRun.start(preset, tmp_path)
    try:
        tables = [placement_group_table(pg) for pg in run.placement_groups]
        assert [(t["strategy"], list(t["bundles"].values())) for t in tables] == [
            ("STRICT_PACK", spec.bundles) for spec in group_specs(plan, preset)]
        assert {role: len(group.handles) for role, group in run.groups.items()} == {
            role: len(slots) for role, slots in plan.slots.items()}
        assert len({w.pid for w in run.workers()}) == len(run.workers()) == 2 + 2 + 2 + 1
    finally:
        run.close()
    assert {placement_group_table(pg)["state"] for pg in run.placement_groups} == {"REMOVED"}
    pids = {w.pid for w in run.workers()}
    deadline = time.monotonic() + 30
    while any(process_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "the workers outlived RayRun.close()"
        time.sleep(0.2)
