"""KL estimators on sampled tokens and the KL-penalised per-token reward.

Notation: for a token a sampled from the policy π (= q), with reference π_ref (= p),

    Δ = log π(a) − log π_ref(a)

and the three estimators of J. Schulman, "Approximating KL divergence" (2020):

    k1 = Δ                       E_q[k1] = KL(q‖p); unbiased, can be negative
    k2 = Δ² / 2                  biased, ≥ 0; as a *loss* its gradient is ∇KL(q‖p)
    k3 = exp(−Δ) − 1 + Δ         E_q[k3] = KL(q‖p); ≥ 0; as a *loss* its gradient is ∇KL(p‖q)

All functions keep the input dtype (OpenRLHF casts to float32; callers that hold bf16 log-probs
should cast first) and are mask-agnostic unless they take a mask: callers mask.
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")

#: k3 evaluates exp(−Δ); Δ is clamped to [−K3_LOG_RATIO_CLAMP, K3_LOG_RATIO_CLAMP] first so that
#: exp never overflows to inf (which would poison the loss and its gradient).
K3_LOG_RATIO_CLAMP = 10.0


def log_ratio(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """Δ = log π(a) − log π_ref(a), per sampled token."""
    return log_probs - ref_log_probs


def approx_kl(
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    estimator: KLEstimator = "k1",
    *,
    output_clamp: float | None = None,
) -> torch.Tensor:
    """Per-token KL estimate, same shape as the inputs.

        k1 = Δ
        k2 = Δ²/2
        k3 = exp(−Δ') − 1 + Δ',   Δ' = clamp(Δ, −10, 10)

    The k3 clamp bounds exp(−Δ') by e¹⁰, so k3 is finite for any input; it only changes k3 where
    |Δ| > 10 (a token 22 000× more or less likely under π than under π_ref), and there the gradient
    of k3 w.r.t. Δ is 0.

    ``output_clamp=c`` additionally clamps the returned estimate to [−c, c], for any estimator.
    OpenRLHF's ``compute_approx_kl`` does this with c = 10 (it clamps the *estimate*, not Δ);
    pass ``output_clamp=10.0`` to reproduce it. Default None: no output clamp.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"KL estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
    delta = log_ratio(log_probs, ref_log_probs)
    if estimator == "k1":
        kl = delta
    elif estimator == "k2":
        kl = 0.5 * delta.square()
    else:
        d = delta.clamp(min=-K3_LOG_RATIO_CLAMP, max=K3_LOG_RATIO_CLAMP)
        kl = torch.exp(-d) - 1 + d
    if output_clamp is not None:
        if output_clamp <= 0:
            raise ValueError(f"output_clamp must be positive, got {output_clamp}")
        kl = kl.clamp(min=-output_clamp, max=output_clamp)
    return kl


def last_valid_index(action_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of a ``[B, T]`` mask (any padding side, holes allowed);
    −1 for a row with no 1."""
    m = action_mask if action_mask.dtype == torch.bool else action_mask != 0
    positions = torch.arange(m.shape[-1], device=m.device).expand_as(m)
    return torch.where(m, positions, torch.full_like(positions, -1)).amax(dim=-1)


def kl_penalized_rewards(
    score: torch.Tensor,
    kl: torch.Tensor,
    action_mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """Per-token reward ``[B, T]`` from a sequence score ``[B]`` and a per-token KL ``[B, T]``:

        r_it = −β·kl_it + [t = last_i]·s_i     on valid tokens (m_it = 1)
        r_it = 0                               on padding

    where last_i is the last valid token of row i (found from the mask, so left padding, right
    padding and holes all work). A row with no valid token gets no reward at all (its score has
    nowhere to go). β = ``kl_coef`` ≥ 0; β = 0 gives the bare score.
    """
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if kl.dim() != 2 or action_mask.shape != kl.shape:
        raise ValueError(
            f"kl and action_mask must both be [B, T], got {tuple(kl.shape)} and {tuple(action_mask.shape)}"
        )
    if score.shape != kl.shape[:1]:
        raise ValueError(f"score must be [B]={kl.shape[0]}, got {tuple(score.shape)}")
    m = action_mask if action_mask.dtype == torch.bool else action_mask != 0
    zero = torch.zeros((), dtype=kl.dtype, device=kl.device)
    rewards = torch.where(m, -kl_coef * kl, zero)
    last = last_valid_index(m)
    positions = torch.arange(kl.shape[-1], device=kl.device)
    at_last = (positions.unsqueeze(0) == last.unsqueeze(1)) & m
    return rewards + torch.where(at_last, score.to(kl.dtype).unsqueeze(1), zero)
