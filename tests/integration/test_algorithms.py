"""Every algorithm and every KL estimator in both placements runs end to end on the tiny preset
and reports the metrics its maths produces."""

from __future__ import annotations

import math

import pytest

from tests.integration.conftest import events, run_cli, run_info

pytestmark = pytest.mark.slow

SHORT = ("train.max_steps=3", "checkpoint.save_steps=0", "train.rollout_batch_size=4", "train.train_batch_size=32",
         "train.micro_train_batch_size=8")


def finite(values: dict, name: str) -> float:
    value = values[name]
    assert value is not None and math.isfinite(value), f"{name} = {value}"
    return value


@pytest.mark.parametrize("algo,estimator", [("ppo", "gae"), ("grpo", "group_norm"), ("reinforce_pp", "reinforce"),
                                            ("rloo", "rloo"), ("reinforce_baseline", "reinforce_baseline")])
def test_algorithm_runs_end_to_end(tmp_path, algo, estimator):
    run = tmp_path / "run"
    assert run_cli(run, *SHORT, f"algo.name=\"{algo}\"") == 0
    hello = events(run)[0]
    assert hello["type"] == "hello" and hello["preset"]["algo"]["name"] == algo and hello["total_steps"] == 3
    [gpu] = events(run, "gpu")  # this machine has no GPU: one event says so, and no sampling thread runs
    assert gpu["devices"] == [] and gpu["reason"] and gpu["host"]["processes"][0]["rss_bytes"] > 0
    metrics = [e["values"] for e in events(run, "metric")]
    assert [e["step"] for e in events(run, "metric")] == [1, 2, 3]
    samples = 4 * 8  # rollout_batch_size × n_samples_per_prompt
    for values in metrics:
        generated = finite(values, "perf/rollout_tokens_per_s") * finite(values, "time/generate_s")
        assert generated == pytest.approx(finite(values, "rollout/response_length") * samples, rel=1e-6)
        assert 1 <= finite(values, "rollout/response_length_max") <= 3
        finite(values, "train/policy_loss")
        assert 0.0 <= finite(values, "reward/mean") <= 1.0
        assert 0.0 <= finite(values, "train/clip_frac") <= 1.0
    transitions = [(e["role"], e["from"], e["to"]) for e in events(run, "state")]
    assert transitions[:2] == [("engine", "idle", "generating"), ("engine", "generating", "idle")]
    assert transitions.count(("actor", "idle", "training")) == 3
    if estimator == "gae":
        assert "critic" in hello["roles"]
        assert transitions.count(("critic", "idle", "training")) == 3
        for values in metrics:
            finite(values, "train/critic_loss")
            finite(values, "train/values")
            assert finite(values, "critic/explained_var") <= 1.0
    else:
        assert "critic" not in hello["roles"] and "train/critic_loss" not in metrics[0]
    assert run_info(run)["status"] == "finished"


@pytest.mark.parametrize("kl_estimator", ["k1", "k2", "k3"])
@pytest.mark.parametrize("use_kl_loss", [False, True])
def test_kl_estimator_in_reward_and_in_loss(tmp_path, kl_estimator, use_kl_loss):
    run = tmp_path / "run"
    assert run_cli(run, "train.max_steps=5", "checkpoint.save_steps=0", f"algo.kl_estimator=\"{kl_estimator}\"",
                   f"algo.use_kl_loss={str(use_kl_loss).lower()}", "algo.kl_coef=0.05",
                   "train.actor_lr=0.003") == 0
    metrics = [e["values"] for e in events(run, "metric")]
    assert abs(metrics[0]["train/kl"]) < 1e-6, "before the first update the policy equals the reference"
    assert abs(finite(metrics[-1], "train/kl")) > 1e-4, "after updates the policy has moved"
    if kl_estimator in ("k2", "k3"):
        assert metrics[-1]["train/kl"] > 0.0, "k2 and k3 are non-negative per token"
    if use_kl_loss:
        assert "train/kl_loss" in metrics[-1]
    else:
        assert "train/kl_loss" not in metrics[-1]
    assert run_info(run)["status"] == "finished"
