"""Learning-rate schedule and KL controller: exact values."""

from __future__ import annotations

import math

import pytest

from rlhf_train.algos.kl_controller import AdaptiveKLController, FixedKLController, make_kl_controller
from rlhf_train.config.schema import AlgoConfig
from rlhf_train.roles import lr_factor


def test_warmup_is_linear_then_constant():
    assert [lr_factor(s, 4, 10, "constant", 0.1) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_goes_from_one_to_the_floor():
    assert lr_factor(0, 0, 10, "cosine_with_min_lr", 0.1) == pytest.approx(1.0)
    assert lr_factor(5, 0, 10, "cosine_with_min_lr", 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(10, 0, 10, "cosine_with_min_lr", 0.1) == pytest.approx(0.1)
    assert lr_factor(50, 0, 10, "cosine_with_min_lr", 0.1) == pytest.approx(0.1)
    mid = 2 + 3
    assert lr_factor(mid, 2, 12, "cosine_with_min_lr", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))


def test_fixed_kl_controller_never_moves():
    ctl = make_kl_controller(AlgoConfig(kl_coef=0.05))
    assert isinstance(ctl, FixedKLController)
    ctl.update(10.0, 1000)
    assert ctl.value == 0.05


def test_adaptive_kl_controller_follows_ziegler():
    ctl = make_kl_controller(AlgoConfig(kl_coef=0.1, kl_target=0.02, kl_horizon=1000))
    assert isinstance(ctl, AdaptiveKLController)
    ctl.update(0.03, 100)  # error = 0.5 clipped to 0.2 → β·(1 + 0.2·100/1000)
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(0.019, 500)  # error = −0.05 → β·(1 − 0.05·0.5)
    assert ctl.value == pytest.approx(0.1 * 1.02 * (1 - 0.025))
