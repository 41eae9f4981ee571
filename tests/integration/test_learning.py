"""The built-in CPU preset really learns: reward of the first 10% of steps vs the last 10% rises
by at least 0.3 within 5 minutes, and with the learning rate at 0 it does not."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import metric_series, run_cli, run_info

pytestmark = pytest.mark.slow


def first_and_last_tenth(values: list[float]) -> tuple[float, float]:
    k = max(1, len(values) // 10)
    return sum(values[:k]) / k, sum(values[-k:]) / k


def test_tiny_preset_learns_within_five_minutes(tmp_path):
    started = time.monotonic()
    assert run_cli(tmp_path / "run") == 0
    elapsed = time.monotonic() - started
    rewards = metric_series(tmp_path / "run", "reward/mean")
    first, last = first_and_last_tenth(rewards)
    print(f"\ntiny-cpu: {len(rewards)} steps in {elapsed:.0f} s; reward first 10% {first:.3f} → last 10% {last:.3f}")
    assert len(rewards) == 300
    assert last - first >= 0.3
    assert elapsed < 300
    info = run_info(tmp_path / "run")
    assert info["status"] == "finished"
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step_000100", "step_000200", "step_000300"]
    assert (checkpoints / "latest").read_text().strip() == "step_000300"


def test_zero_learning_rate_does_not_rise(tmp_path):
    assert run_cli(tmp_path / "run", "train.actor_lr=0.0") == 0
    rewards = metric_series(tmp_path / "run", "reward/mean")
    first, last = first_and_last_tenth(rewards)
    print(f"\ntiny-cpu lr=0: reward first 10% {first:.3f} → last 10% {last:.3f}")
    assert abs(last - first) < 0.1
    assert max(rewards) < 0.2
