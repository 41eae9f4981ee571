"""The KL coefficient β over training: fixed, or adaptive (Ziegler et al. 2019, as OpenRLHF):

    e = clip(KL / KL_target − 1, −0.2, 0.2)
    β ← β · (1 + e · n / horizon)        after a rollout of n samples with mean KL
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_train.config.schema import AlgoConfig


@dataclass
class FixedKLController:
    value: float

    def update(self, current_kl: float, n_samples: int) -> None:
        """β stays as configured."""


@dataclass
class AdaptiveKLController:
    value: float
    target: float
    horizon: int

    def update(self, current_kl: float, n_samples: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon


def make_kl_controller(algo: AlgoConfig) -> FixedKLController | AdaptiveKLController:
    if algo.kl_target > 0:
        return AdaptiveKLController(algo.kl_coef, algo.kl_target, algo.kl_horizon)
    return FixedKLController(algo.kl_coef)
