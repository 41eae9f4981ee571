"""Token log-probabilities, entropy, and the PPO policy / value / KL losses.

Every loss takes a per-token mask and an aggregation mode (see
:func:`rlhf_train.algos.masks.aggregate_loss`): ``"token"`` averages over all valid tokens of the
batch, ``"sequence"`` averages the per-sequence token means. Passing ``seq_lens`` says the inputs
are packed ``[1, T]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .kl import KLEstimator, approx_kl
from .masks import AggMode, aggregate_loss, masked_mean

#: Rows of logits processed at once by the chunked functions: bounds the temporaries at
#: chunk × vocabulary instead of B × T × vocabulary.
LOGITS_CHUNK = 4096


def _chunks(n: int, size: int):
    return ((i, min(i + size, n)) for i in range(0, n, size))


def log_probs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(z/τ)[y] = z_y/τ − logsumexp(z/τ), for logits ``[..., V]`` and labels ``[...]``.

    Memory-light: the logsumexp is computed over chunks of rows, so no full-size log-softmax (or
    temperature-scaled copy of the logits) is ever materialised. ``logits`` is not modified.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    picked = flat.gather(-1, labels.reshape(-1, 1).long()).squeeze(-1)
    parts = [
        torch.logsumexp(flat[a:b] / temperature if temperature != 1.0 else flat[a:b], dim=-1)
        for a, b in _chunks(flat.shape[0], LOGITS_CHUNK)
    ]
    lse = torch.cat(parts) if parts else picked.new_zeros(0)
    return (picked / temperature - lse).reshape(labels.shape)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = −Σ_v π_v log π_v = logsumexp(z) − Σ_v softmax(z)_v·z_v, per position ``[...]``
    (chunked like :func:`log_probs_from_logits`)."""
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    parts = []
    for a, b in _chunks(flat.shape[0], LOGITS_CHUNK):
        z = flat[a:b]
        parts.append(torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1))
    ent = torch.cat(parts) if parts else flat.new_zeros(0)
    return ent.reshape(logits.shape[:-1])


def _metric_mask(mask: torch.Tensor, seq_lens: Sequence[int] | None, like: torch.Tensor) -> torch.Tensor:
    """Bool mask of the valid tokens; in the packed layout, entries after Σ seq_lens are padding."""
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match data shape {tuple(like.shape)}")
    m = mask if mask.dtype == torch.bool else mask != 0
    if seq_lens is not None:
        end = sum(int(n) for n in seq_lens)
        m = m & (torch.arange(m.shape[-1], device=m.device) < end)
    return m


def _zero_padding(m: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Replace padding entries by 0 *before* any arithmetic: a masked-out inf or NaN would
    otherwise turn into NaN in the backward pass (0 · inf), even though the forward value ignores it."""
    return [torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)) for x in tensors]


@dataclass
class PolicyLossOutput:
    """The PPO policy loss and its diagnostics (the diagnostics are detached, token-level means
    over the valid tokens, whatever the aggregation of the loss)."""

    loss: torch.Tensor
    clip_frac: torch.Tensor  # fraction of tokens where the PPO clip was the active branch
    approx_kl: torch.Tensor  # mean of (old − new) log-prob, k1 estimate of KL(π_old‖π)
    dual_clip_frac: torch.Tensor  # fraction of tokens capped by the dual clip (0 without it)


def policy_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    dual_clip: float | None = None,
    agg: AggMode = "token",
    seq_lens: Sequence[int] | None = None,
) -> PolicyLossOutput:
    """PPO clipped surrogate (Schulman et al. 2017), with asymmetric clip (ε_low, ε_high):

        ρ_t = exp(log π(a_t) − log π_old(a_t))
        ℓ_t = −min(ρ_t·A_t, clip(ρ_t, 1 − ε_low, 1 + ε_high)·A_t)

    Dual clip (Ye et al. 2020), c > 1: for A_t < 0, ℓ_t = min(ℓ_t, −c·A_t), which caps how far a
    negative-advantage token with a huge ratio can push the loss.

    The loss is ``aggregate_loss(ℓ, mask, agg)``. ``clip_frac`` counts the tokens where the clipped
    surrogate was strictly smaller (clip(ρ)·A < ρ·A, as OpenRLHF counts them); there, and where the
    dual clip caps ℓ, the gradient is zero.
    """
    if not (0 <= clip_eps_low < 1) or clip_eps_high < 0:
        raise ValueError(f"need 0 <= clip_eps_low < 1 and clip_eps_high >= 0, got {clip_eps_low}, {clip_eps_high}")
    if dual_clip is not None and dual_clip <= 1:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
    m = _metric_mask(mask, seq_lens, log_probs)
    log_probs, old_log_probs, advantages = _zero_padding(m, log_probs, old_log_probs, advantages)
    ratio = torch.exp(log_probs - old_log_probs)
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high) * advantages
    loss_t = -torch.min(surr1, surr2)
    dual = torch.zeros_like(m)
    if dual_clip is not None:
        cap = -dual_clip * advantages
        dual = (advantages < 0) & (cap < loss_t)
        loss_t = torch.where(dual, cap, loss_t)
    loss = aggregate_loss(loss_t, mask, agg, seq_lens=seq_lens)
    with torch.no_grad():
        dt = log_probs.dtype
        clip_frac = masked_mean((surr2 < surr1).to(dt), m)
        approx = masked_mean(old_log_probs - log_probs, m)
        dual_frac = masked_mean(dual.to(dt), m)
    return PolicyLossOutput(loss=loss, clip_frac=clip_frac, approx_kl=approx, dual_clip_frac=dual_frac)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    value_clip: float | None = 0.2,
    agg: AggMode = "token",
    seq_lens: Sequence[int] | None = None,
) -> torch.Tensor:
    """Clipped value loss (PPO2 / OpenRLHF):

        V_clip = V_old + clamp(V − V_old, −c, c)
        ℓ_t = ½·max((V − R)², (V_clip − R)²)        (value_clip = c)
        ℓ_t = ½·(V − R)²                             (value_clip = None)

    aggregated with ``aggregate_loss(ℓ, mask, agg)``.
    """
    m = _metric_mask(mask, seq_lens, values)
    values, old_values, returns = _zero_padding(m, values, old_values, returns)
    if value_clip is not None:
        if value_clip <= 0:
            raise ValueError(f"value_clip must be positive (or None), got {value_clip}")
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        loss_t = 0.5 * torch.max((values - returns).square(), (clipped - returns).square())
    else:
        loss_t = 0.5 * (values - returns).square()
    return aggregate_loss(loss_t, mask, agg, seq_lens=seq_lens)


def kl_loss(
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    mask: torch.Tensor,
    estimator: KLEstimator,
    agg: AggMode = "token",
    seq_lens: Sequence[int] | None = None,
    output_clamp: float | None = None,
) -> torch.Tensor:
    """The in-loss KL term (``use_kl_loss``): ``aggregate_loss(k(Δ), mask, agg)`` with k one of the
    estimators of :func:`rlhf_train.algos.kl.approx_kl`. Use k2: its gradient is the gradient of
    the reverse KL(π‖π_ref) (per token); k1's pathwise gradient is zero in expectation and k3's is
    the forward KL's. The caller multiplies by β."""
    m = _metric_mask(mask, seq_lens, log_probs)
    log_probs, ref_log_probs = _zero_padding(m, log_probs, ref_log_probs)
    per_token = approx_kl(log_probs, ref_log_probs, estimator, output_clamp=output_clamp)
    return aggregate_loss(per_token, mask, agg, seq_lens=seq_lens)
