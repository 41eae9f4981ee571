"""Reward normalisation by running statistics (``[reward].normalize``).

After the scores ``x_1 .. x_m`` of every rollout so far (this one included), with
``μ = mean(x)`` and ``σ² = (1/m) Σ (x_i − μ)²`` (population variance), a score ``x`` of this
rollout becomes ``(x − μ) / max(σ, eps)``. The statistics are merged batch by batch with Chan et
al.'s parallel update in float64, so they equal those of the concatenated scores.
"""

from __future__ import annotations

import torch

EPS = 1e-8


class RunningNormalizer:
    """``normalizer(scores)`` → normalised scores (float32), after folding ``scores`` into the
    running mean and variance; ``count``, ``mean`` and ``var`` are the statistics so far."""

    def __init__(self, eps: float = EPS):
        self.eps = eps
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # Σ (x − mean)²

    @property
    def var(self) -> float:
        return self.m2 / self.count if self.count else 0.0

    def update(self, scores: torch.Tensor) -> None:
        """Fold ``scores`` in: ``M2 = M2_a + M2_b + δ² · n_a n_b / n`` with ``δ = mean_b − mean_a``."""
        batch = scores.detach().to(torch.float64).reshape(-1)
        n_b = batch.numel()
        if n_b == 0:
            return
        mean_b = batch.mean().item()
        m2_b = ((batch - mean_b) ** 2).sum().item()
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    def state(self) -> dict[str, float]:
        """The statistics so far, for a checkpoint (`load_state` puts them back)."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        self.update(scores)
        std = max(self.var ** 0.5, self.eps)
        return ((scores.to(torch.float64) - self.mean) / std).to(torch.float32)
