"""Returns and advantages: return-to-go, GAE, and the score shaping of the critic-free estimators.

Shapes: per-token tensors are ``[B, T]`` with a 0/1 (or bool) ``mask``; sequence scores are
``[B]``. The samples of one prompt are contiguous: with n samples per prompt, rows
``[i*n, (i+1)*n)`` belong to prompt i (B = prompts × n).

Masks: every output is 0 on padding. Padding is *transparent* to the recursions: the running
return (and, for GAE, the next value and the running advantage) is carried across masked
positions unchanged, so only valid tokens count as time steps. For the usual masks (left or right
padding) this is exactly OpenRLHF's recursion; it only differs for masks with holes, where
OpenRLHF would discount across the hole.
"""

from __future__ import annotations

from typing import Literal

import torch

from .kl import kl_penalized_rewards
from .masks import masked_mean

AdvantageEstimator = Literal["gae", "reinforce", "rloo", "reinforce_baseline", "group_norm"]
ADVANTAGE_ESTIMATORS: tuple[str, ...] = ("gae", "reinforce", "rloo", "reinforce_baseline", "group_norm")


def _check_per_token(name: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if x.dim() != 2 or mask.shape != x.shape:
        raise ValueError(f"{name} and mask must both be [B, T], got {tuple(x.shape)} and {tuple(mask.shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = Σ_{k ≥ t} γ^(k−t) r_k over the valid tokens of each row (k, t counting valid tokens
    only); 0 on padding. Backward recursion G_t = r_t + γ·G_{t+1}, G after the last valid token = 0.
    """
    m = _check_per_token("rewards", rewards, mask)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    out = []
    for t in reversed(range(rewards.shape[1])):
        running = torch.where(m[:, t], rewards[:, t] + gamma * running, running)
        out.append(torch.where(m[:, t], running, zero))
    return torch.stack(out[::-1], dim=1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lambd: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), per row over its valid tokens:

        δ_t = r_t + γ·V_{t+1} − V_t            (V after the last valid token = 0)
        A_t = δ_t + γλ·A_{t+1} = Σ_{k ≥ t} (γλ)^(k−t) δ_k
        R_t = A_t + V_t                          (the critic's regression target)

    Returns ``(advantages, returns)``, both 0 on padding. With γ = λ = 1, A_t = G_t − V_t
    (return-to-go minus value). Values are treated as constants (no gradient is meant to flow).
    """
    m = _check_per_token("rewards", rewards, mask)
    if values.shape != rewards.shape:
        raise ValueError(f"values {tuple(values.shape)} must match rewards {tuple(rewards.shape)}")
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    B, T = rewards.shape
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    running = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    adv = []
    for t in reversed(range(T)):
        v_t = values[:, t]
        delta = rewards[:, t] + gamma * next_value - v_t
        running = torch.where(m[:, t], delta + gamma * lambd * running, running)
        next_value = torch.where(m[:, t], v_t, next_value)
        adv.append(torch.where(m[:, t], running, zero))
    advantages = torch.stack(adv[::-1], dim=1)
    returns = torch.where(m, advantages + values, zero)
    return advantages, returns


def _groups(scores: torch.Tensor, n: int) -> torch.Tensor:
    if scores.dim() != 1:
        raise ValueError(f"scores must be [B], got {tuple(scores.shape)}")
    if n < 1 or scores.shape[0] % n != 0:
        raise ValueError(f"batch of {scores.shape[0]} scores does not split into groups of n_samples_per_prompt={n}")
    return scores.reshape(-1, n)


def group_norm_scores(scores: torch.Tensor, n: int, std_norm: bool = True, eps: float = 1e-9) -> torch.Tensor:
    """GRPO shaping within each prompt's group g of n samples:

        s'_i = (s_i − mean_g) / (std_g + ε)     (std_norm=True)
        s'_i =  s_i − mean_g                    (std_norm=False)

    std_g is the *unbiased* (Bessel, 1/(n−1)) standard deviation, ``torch.std``'s default, and
    ε = 1e-9 is added to it, both exactly as OpenRLHF v0.6 (``rewards.std(-1) + 1e-9``). A group of
    equal scores gives all zeros. With n = 1 the unbiased std is undefined, so std_norm needs n ≥ 2.
    """
    g = _groups(scores, n)
    centered = g - g.mean(dim=-1, keepdim=True)
    if std_norm:
        if n < 2:
            raise ValueError("group_norm with std normalisation needs n_samples_per_prompt >= 2")
        centered = centered / (g.std(dim=-1, keepdim=True) + eps)
    return centered.reshape(-1)


def rloo_scores(scores: torch.Tensor, n: int) -> torch.Tensor:
    """RLOO shaping: each sample minus the mean of the *other* n − 1 samples of its group,

        s'_i = s_i − (Σ_{j≠i} s_j) / (n − 1)   =  n/(n−1) · (s_i − mean_g).
    """
    if n < 2:
        raise ValueError(f"rloo needs n_samples_per_prompt >= 2, got {n}")
    g = _groups(scores, n)
    baseline = (g.sum(dim=-1, keepdim=True) - g) / (n - 1)
    return (g - baseline).reshape(-1)


def baseline_scores(scores: torch.Tensor, n: int) -> torch.Tensor:
    """REINFORCE++-baseline shaping: s'_i = s_i − mean_g (no division by the std)."""
    g = _groups(scores, n)
    return (g - g.mean(dim=-1, keepdim=True)).reshape(-1)


def normalize_advantages(adv: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batch whitening over the valid tokens:

        μ = mean_valid(A),  σ² = mean_valid((A − μ)²)   (population variance)
        A' = (A − μ) / sqrt(max(σ², ε))                  on valid tokens, 0 on padding

    as OpenRLHF's replay buffer does (it clamps the variance at 1e-8, and reduces μ and σ² over all
    data-parallel ranks: a distributed caller must reduce the sums itself). OpenRLHF whitens for
    every estimator except group_norm; :func:`compute_advantages` leaves this step to the caller.
    """
    m = mask if mask.dtype == torch.bool else mask != 0
    zero = torch.zeros((), dtype=adv.dtype, device=adv.device)
    mean = masked_mean(adv, m)
    centered = torch.where(m, adv - mean, zero)
    var = masked_mean(centered.square(), m)
    return centered * var.clamp(min=eps).rsqrt()


def shape_scores(estimator: AdvantageEstimator, scores: torch.Tensor, n: int, std_norm: bool = True) -> torch.Tensor:
    """The sequence-score shaping each estimator applies before rewards are built:
    rloo → :func:`rloo_scores`, reinforce_baseline → :func:`baseline_scores`, group_norm →
    :func:`group_norm_scores`; gae and reinforce use the raw scores."""
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"advantage estimator must be one of {ADVANTAGE_ESTIMATORS}, got {estimator!r}")
    if estimator == "rloo":
        return rloo_scores(scores, n)
    if estimator == "reinforce_baseline":
        return baseline_scores(scores, n)
    if estimator == "group_norm":
        return group_norm_scores(scores, n, std_norm=std_norm)
    return scores


def compute_advantages(
    estimator: AdvantageEstimator,
    *,
    scores: torch.Tensor,
    kl: torch.Tensor,
    action_mask: torch.Tensor,
    kl_coef: float,
    n_samples_per_prompt: int,
    gamma: float = 1.0,
    lambd: float = 1.0,
    values: torch.Tensor | None = None,
    std_norm: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns ``[B, T]`` the way OpenRLHF v0.6 makes them:

    1. s' = shape_scores(estimator, s)   (rloo / reinforce_baseline / group_norm; raw otherwise)
    2. r  = kl_penalized_rewards(s', kl, mask, β)     (−β·kl per token, s' at the last token)
    3. gae:              (A, R) = gae(r, V, mask, γ, λ)            (needs ``values``)
       critic-free ones: R = returns_to_go(r, mask, γ),  A = R

    Whitening (:func:`normalize_advantages`) is *not* applied here: OpenRLHF applies it afterwards,
    over the whole rollout, for every estimator except group_norm, and so should the caller.
    """
    _groups(scores, n_samples_per_prompt)  # the batch must be prompts × n, whatever the estimator
    shaped = shape_scores(estimator, scores, n_samples_per_prompt, std_norm=std_norm)
    rewards = kl_penalized_rewards(shaped, kl, action_mask, kl_coef)
    if estimator == "gae":
        if values is None:
            raise ValueError("the gae estimator needs critic values (values=None was given)")
        return gae(rewards, values, action_mask, gamma, lambd)
    returns = returns_to_go(rewards, action_mask, gamma)
    return returns.clone(), returns
