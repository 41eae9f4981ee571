"""Log-probs, entropy, and the PPO policy / value / KL losses on hand-computed cases (float64)."""

import math

import pytest
import torch

import rlhf_train.algos.losses as losses_mod
from rlhf_train.algos import (
    aggregate_loss,
    approx_kl,
    entropy_from_logits,
    kl_loss,
    log_probs_from_logits,
    padded_to_packed,
    policy_loss,
    value_loss,
)

F64 = torch.float64
TOL = dict(rtol=0, atol=1e-12)


def T(data):
    return torch.tensor(data, dtype=F64)


# ---------------------------------------------------------------- log-probs and entropy


@pytest.mark.parametrize("chunk", [3, 4096])
def test_log_probs_from_logits_matches_log_softmax(monkeypatch, chunk):
    monkeypatch.setattr(losses_mod, "LOGITS_CHUNK", chunk)  # 3: many chunks, ragged last one
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 5, 7, generator=g, dtype=F64)).requires_grad_(True)
    labels = torch.randint(0, 7, (2, 5), generator=g)
    before = logits.detach().clone()
    for tau in (1.0, 0.7):
        got = log_probs_from_logits(logits, labels, temperature=tau)
        want = torch.log_softmax(logits / tau, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(got, want, **TOL)
        g_got = torch.autograd.grad(got.sum(), logits)[0]
        g_want = torch.autograd.grad(want.sum(), logits)[0]
        torch.testing.assert_close(g_got, g_want, **TOL)
    assert torch.equal(logits.detach(), before)  # the logits are not modified in place


def test_entropy_from_logits_exact(monkeypatch):
    monkeypatch.setattr(losses_mod, "LOGITS_CHUNK", 2)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 6, generator=g, dtype=F64)
    logits[0, 0] = 0.0  # uniform: H = log V
    logp = torch.log_softmax(logits, -1)
    want = -(logp.exp() * logp).sum(-1)
    got = entropy_from_logits(logits)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got[0, 0], T(math.log(6)), **TOL)


# ---------------------------------------------------------------- policy loss

# (ratio, advantage) per token; ε = 0.2
RATIOS = [1.5, 0.5, 0.5, 1.5, 4.0, 1.1]
ADVS = [1.0, 1.0, -1.0, -1.0, -2.0, 2.0]
# -min(ρA, clip(ρ)A):  clipped,  free,  clipped,  free,  free (dual-clip target),  free
LOSSES = [-1.2, -0.5, 0.8, 1.5, 8.0, -2.2]


def _policy_inputs():
    pad = 2
    lp = torch.log(T(RATIOS + [1.0] * pad)).requires_grad_(True)
    old = torch.zeros(len(RATIOS) + pad, dtype=F64)
    adv = T(ADVS + [float("nan")] * pad)
    mask = torch.tensor([1] * len(RATIOS) + [0] * pad)
    return lp.unsqueeze(0), old.unsqueeze(0), adv.unsqueeze(0), mask.unsqueeze(0)


def test_policy_loss_hand_clipped_values_clip_frac_and_zero_gradient_when_clipped():
    lp, old, adv, mask = _policy_inputs()
    out = policy_loss(lp, old, adv, mask)
    n = len(RATIOS)
    torch.testing.assert_close(out.loss, T(sum(LOSSES) / n), **TOL)
    torch.testing.assert_close(out.clip_frac, T(2 / n), **TOL)
    torch.testing.assert_close(out.dual_clip_frac, T(0.0), **TOL)
    torch.testing.assert_close(out.approx_kl, T(-sum(math.log(r) for r in RATIOS) / n), **TOL)
    (g,) = torch.autograd.grad(out.loss, lp)
    # d/dlogπ of −ρA is −ρA (unclipped); clipped tokens and padding get exactly 0
    expected = [0.0, -0.5 / n, 0.0, 1.5 / n, 8.0 / n, -2.2 / n, 0.0, 0.0]
    torch.testing.assert_close(g[0], T(expected), **TOL)
    assert g[0, 0] == 0 and g[0, 2] == 0


def test_policy_loss_dual_clip():
    lp, old, adv, mask = _policy_inputs()
    out = policy_loss(lp, old, adv, mask, dual_clip=3.0)
    n = len(RATIOS)
    dual_losses = LOSSES[:4] + [6.0] + LOSSES[5:]  # token 5: min(8, −3·(−2)) = 6; token 4: 1.5 < 3
    torch.testing.assert_close(out.loss, T(sum(dual_losses) / n), **TOL)
    torch.testing.assert_close(out.dual_clip_frac, T(1 / n), **TOL)
    torch.testing.assert_close(out.clip_frac, T(2 / n), **TOL)
    (g,) = torch.autograd.grad(out.loss, lp)
    assert g[0, 4] == 0  # capped by the dual clip: no gradient
    torch.testing.assert_close(g[0, 3], T(1.5 / n), **TOL)
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(lp, old, adv, mask, dual_clip=1.0)


def test_policy_loss_asymmetric_clip():
    lp, old, adv, mask = _policy_inputs()
    out = policy_loss(lp, old, adv, mask, clip_eps_low=0.2, clip_eps_high=0.28)
    n = len(RATIOS)
    torch.testing.assert_close(out.loss, T((sum(LOSSES) + 1.2 - 1.28) / n), **TOL)
    # a low clip of 0.6 frees token 3 (ρ = 0.5 > 0.4): loss ρ·|A| = 0.5 instead of 0.8
    out = policy_loss(lp, old, adv, mask, clip_eps_low=0.6)
    torch.testing.assert_close(out.loss, T((sum(LOSSES) - 0.8 + 0.5) / n), **TOL)
    torch.testing.assert_close(out.clip_frac, T(1 / n), **TOL)


def test_policy_loss_sequence_aggregation_and_packed_layout():
    lp = torch.log(T([RATIOS[:4] + [1.0, 1.0], RATIOS[4:] + [1.0] * 4]))
    old = torch.zeros_like(lp)
    adv = T([ADVS[:4] + [0.0, 0.0], ADVS[4:] + [0.0] * 4])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    seq = policy_loss(lp, old, adv, mask, agg="sequence")
    torch.testing.assert_close(seq.loss, T((sum(LOSSES[:4]) / 4 + sum(LOSSES[4:]) / 2) / 2), **TOL)
    lens = [4, 2]
    packed = [padded_to_packed(x, lens) for x in (lp, old, adv, mask)]
    for agg in ("token", "sequence"):
        a = policy_loss(lp, old, adv, mask, agg=agg)
        b = policy_loss(*packed, agg=agg, seq_lens=lens)
        for field in ("loss", "clip_frac", "approx_kl", "dual_clip_frac"):
            torch.testing.assert_close(getattr(a, field), getattr(b, field), **TOL)


def test_policy_loss_on_policy_gradient_is_minus_advantage():
    lp = T([[-1.0, -2.0, -0.5]]).requires_grad_(True)
    adv = T([[0.3, -1.2, 2.0]])
    out = policy_loss(lp, lp.detach(), adv, torch.ones(1, 3))
    torch.testing.assert_close(out.loss, T(-(0.3 - 1.2 + 2.0) / 3), **TOL)
    (g,) = torch.autograd.grad(out.loss, lp)
    torch.testing.assert_close(g, -adv / 3, **TOL)
    assert out.clip_frac.item() == 0.0


# ---------------------------------------------------------------- value loss

V = T([[1.0, 1.0, 0.6, 0.0, 7.0]])
OLD = T([[0.5, 0.5, 0.5, 0.5, 7.0]])
RET = T([[0.0, 2.0, 1.0, -1.0, 7.0]])
VMASK = torch.tensor([[1, 1, 1, 1, 0]])


def test_value_loss_clipped_hand():
    v = V.clone().requires_grad_(True)
    # V_clip = [0.7, 0.7, 0.6, 0.3]; ½·max((V−R)², (V_clip−R)²) = ½·[1, 1.69, 0.16, 1.69]
    loss = value_loss(v, OLD, RET, VMASK, value_clip=0.2)
    torch.testing.assert_close(loss, T((0.5 + 0.845 + 0.08 + 0.845) / 4), **TOL)
    (g,) = torch.autograd.grad(loss, v)
    # token 0: unclipped branch, (V−R)/N; tokens 1 and 3: clipped branch saturated, 0; token 2: inside
    torch.testing.assert_close(g, T([[1.0 / 4, 0.0, -0.4 / 4, 0.0, 0.0]]), **TOL)


def test_value_loss_unclipped_hand():
    loss = value_loss(V, OLD, RET, VMASK, value_clip=None)
    torch.testing.assert_close(loss, T((0.5 + 0.5 + 0.08 + 0.5) / 4), **TOL)
    seq = value_loss(V, OLD, RET, VMASK, value_clip=None, agg="sequence")
    torch.testing.assert_close(seq, loss, **TOL)  # one row: both modes agree


# ---------------------------------------------------------------- KL loss


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_loss_is_aggregated_estimator(estimator):
    lp = T([[-1.0, -2.0, -0.5, 0.0], [-0.2, -3.0, 0.0, 0.0]])
    ref = T([[-1.5, -1.0, -0.5, 9.0], [-0.1, -1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    per_token = approx_kl(lp, ref, estimator)
    torch.testing.assert_close(kl_loss(lp, ref, mask, estimator), aggregate_loss(per_token, mask, "token"), **TOL)
    k = per_token.tolist()
    want_seq = (sum(k[0][:3]) / 3 + sum(k[1][:2]) / 2) / 2
    torch.testing.assert_close(kl_loss(lp, ref, mask, estimator, agg="sequence"), T(want_seq), **TOL)


def test_kl_loss_k2_hand():
    lp = T([[-1.0, -2.0]])
    ref = T([[-1.5, -1.0]])
    # Δ = (0.5, −1): k2 = (0.125, 0.5)
    torch.testing.assert_close(kl_loss(lp, ref, torch.ones(1, 2), "k2"), T(0.3125), **TOL)


def test_losses_ignore_inf_and_nan_in_padding_including_gradients():
    lp = T([[-1.0, float("-inf")]]).requires_grad_(True)
    ref = T([[-1.5, float("nan")]])
    mask = torch.tensor([[1, 0]])
    for est in ("k1", "k2", "k3"):
        loss = kl_loss(lp, ref, mask, est)
        torch.testing.assert_close(loss, approx_kl(lp[:, :1], ref[:, :1], est).sum(), **TOL)
        (g,) = torch.autograd.grad(loss, lp)
        assert torch.isfinite(g).all() and g[0, 1] == 0
    v = T([[1.0, float("inf")]]).requires_grad_(True)
    loss = value_loss(v, T([[0.5, float("nan")]]), T([[0.0, float("-inf")]]), mask)
    torch.testing.assert_close(loss, T(0.5), **TOL)
    (g,) = torch.autograd.grad(loss, v)
    assert torch.isfinite(g).all() and g[0, 1] == 0
    with pytest.raises(ValueError, match="mask shape"):
        policy_loss(lp, lp.detach(), lp.detach(), torch.ones(1, 1))
