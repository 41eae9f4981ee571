"""Explained variance against a float64 hand computation."""

from __future__ import annotations

import torch

from rlhf_train.algos.diagnostics import explained_variance


def test_explained_variance_matches_the_definition_over_valid_tokens():
    g = torch.Generator().manual_seed(0)
    returns = torch.randn(3, 5, generator=g, dtype=torch.float64)
    values = returns + 0.3 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float64)
    r, v = returns[mask.bool()], values[mask.bool()]
    expected = 1 - torch.var(r - v, unbiased=False) / torch.var(r, unbiased=False)
    assert torch.allclose(explained_variance(values, returns, mask), expected, atol=1e-12)


def test_perfect_constant_and_degenerate_critics():
    returns = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    mask = torch.ones_like(returns)
    assert explained_variance(returns, returns, mask).item() == 1.0
    assert abs(explained_variance(torch.full_like(returns, 5.0), returns, mask).item()) < 1e-12
    flat = torch.full_like(returns, 2.0)
    assert explained_variance(returns, flat, mask).item() == 0.0
