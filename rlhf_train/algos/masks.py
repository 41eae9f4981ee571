"""Masked reductions and the two batch layouts (padded and packed).

A *mask* is a 0/1 or bool tensor with the shape of the data; 1 marks a valid token (an action of
the policy), 0 marks padding or prompt. Padding may hold anything (even ``inf``/``nan``): every
function here selects with ``torch.where`` instead of multiplying, so garbage never leaks into a
sum or a gradient.

Layouts:

* **padded** ``[B, T]``: one sequence per row.
* **packed** ``[1, T]``: the sequences concatenated in one row, ``seq_lens[i]`` entries each, in
  order; entries after ``sum(seq_lens)`` are trailing padding and are ignored. Which entries inside
  a sequence are valid is still said by the mask.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

AggMode = Literal["token", "sequence"]
AGG_MODES: tuple[str, ...] = ("token", "sequence")


def _bool_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match data shape {tuple(x.shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ_{t: m_t=1} x_t over ``dim`` (all dims when None). Padding contributes exactly 0."""
    m = _bool_mask(x, mask)
    kept = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_count(mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Number of valid entries, Σ m_t (an integer tensor)."""
    m = mask if mask.dtype == torch.bool else mask != 0
    return m.sum() if dim is None else m.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ_t m_t·x_t / Σ_t m_t over ``dim`` (all dims when None).

    A slice with no valid entry gives 0, never NaN (the count is clamped to ≥ 1, which changes
    nothing for counts that are already ≥ 1, and keeps gradients finite).
    """
    total = masked_sum(x, mask, dim)
    count = masked_count(mask, dim).clamp(min=1).to(x.dtype)
    return total / count


def packed_to_padded(
    x_packed: torch.Tensor, seq_lens: Sequence[int], pad_value: float = 0
) -> torch.Tensor:
    """Unpack ``[1, T, *rest]`` (or ``[T, *rest]``) into right-padded ``[B, max(seq_lens), *rest]``.

    Row i holds ``x_packed[o_i : o_i + seq_lens[i]]`` with o_i = Σ_{j<i} seq_lens[j], then
    ``pad_value``. Entries after Σ seq_lens (trailing padding) are dropped. Differentiable.
    """
    if x_packed.dim() >= 2:
        if x_packed.shape[0] != 1:
            raise ValueError(f"packed data must have shape [1, T, ...] or [T], got {tuple(x_packed.shape)}")
        flat = x_packed[0]
    else:
        flat = x_packed
    lens = [int(n) for n in seq_lens]
    if any(n < 0 for n in lens):
        raise ValueError(f"seq_lens must be non-negative, got {lens}")
    if sum(lens) > flat.shape[0]:
        raise ValueError(f"sum(seq_lens)={sum(lens)} exceeds the packed length {flat.shape[0]}")
    max_len = max(lens, default=0)
    rest = tuple(flat.shape[1:])
    rows = []
    offset = 0
    for n in lens:
        pad = flat.new_full((max_len - n, *rest), pad_value)
        rows.append(torch.cat([flat[offset : offset + n], pad], dim=0))
        offset += n
    if not rows:
        return flat.new_full((0, 0, *rest), pad_value)
    return torch.stack(rows, dim=0)


def padded_to_packed(x: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Pack right-padded ``[B, L, *rest]`` into ``[1, Σ lengths, *rest]``: row i contributes
    ``x[i, :lengths[i]]``. The inverse of :func:`packed_to_padded`. Differentiable."""
    lens = [int(n) for n in lengths]
    if len(lens) != x.shape[0]:
        raise ValueError(f"got {len(lens)} lengths for {x.shape[0]} rows")
    if any(n < 0 or n > x.shape[1] for n in lens):
        raise ValueError(f"lengths must lie in [0, {x.shape[1]}], got {lens}")
    parts = [x[i, :n] for i, n in enumerate(lens)]
    packed = torch.cat(parts, dim=0) if parts else x.new_zeros((0, *x.shape[2:]))
    return packed.unsqueeze(0)


def aggregate_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: AggMode = "token",
    *,
    seq_lens: Sequence[int] | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss ℓ to a scalar.

    * ``"token"``:    L = Σ_{i,t} m_it·ℓ_it / Σ_{i,t} m_it   (every valid token weighs the same)
    * ``"sequence"``: L = (1/|S|) Σ_{i∈S} [Σ_t m_it·ℓ_it / Σ_t m_it]   (every sequence weighs the same)

    where S is the set of sequences with at least one valid token (a sequence with none has no
    loss term, so it neither counts nor turns the result into NaN); no valid token at all → 0.

    ``per_token``/``mask`` are padded ``[B, T]``, or packed ``[1, T]`` when ``seq_lens`` is given;
    the same data in either layout gives the same value.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"aggregation mode must be one of {AGG_MODES}, got {mode!r}")
    if seq_lens is not None:
        m = _bool_mask(per_token, mask)
        per_token = packed_to_padded(per_token, seq_lens)
        mask = packed_to_padded(m, seq_lens, pad_value=False)
    if mode == "token":
        return masked_mean(per_token, mask)
    if per_token.dim() < 2:
        raise ValueError("sequence aggregation needs a [B, T] (padded) or packed tensor with seq_lens")
    row_mean = masked_mean(per_token, mask, dim=-1)
    has_tokens = masked_count(mask, dim=-1) > 0
    return masked_mean(row_mean, has_tokens)
