"""Diagnostics of training health (logged, never optimised)."""

from __future__ import annotations

import torch

from rlhf_train.algos.masks import masked_mean


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How much of the returns' variance the critic explains, over valid tokens:

        EV = 1 − Var[R − V] / Var[R]

    1 is a perfect critic, 0 no better than a constant, negative worse. When the returns do not
    vary at all the ratio is undefined; 0 is returned then.
    """
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    residual = returns - values
    var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
    if var_returns <= 0:
        return torch.zeros((), dtype=returns.dtype)
    return 1.0 - var_residual / var_returns
