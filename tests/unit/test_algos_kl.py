"""KL estimators against exact enumeration of a small vocabulary (float64), and the KL-penalised
reward. q = softmax(θ) is the policy, p the fixed reference; "pathwise" means the estimator is
used as a loss on samples (expectation weights detached), "score function" means it is used as a
reward through ∇ log q."""

import math

import pytest
import torch

from rlhf_train.algos import (
    K3_LOG_RATIO_CLAMP,
    approx_kl,
    kl_penalized_rewards,
    last_valid_index,
    log_ratio,
    returns_to_go,
)

F64 = torch.float64


def T(data):
    return torch.tensor(data, dtype=F64)


V = 5
TOL = dict(rtol=0, atol=1e-12)


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(V, generator=g, dtype=F64).requires_grad_(True)
    log_p = torch.log_softmax(torch.randn(V, generator=g, dtype=F64), dim=-1)
    return theta, log_p


def _grad(f, theta):
    (g,) = torch.autograd.grad(f, theta)
    return g


def _kl(log_a, log_b):
    """KL(a‖b) = Σ a (log a − log b), exact."""
    return (log_a.exp() * (log_a - log_b)).sum()


def _pathwise(estimator, theta, log_p):
    """∇θ E_q[k(a)] with k a loss on samples: Σ_a q(a)·∇k(a) (q detached, no score function)."""
    log_q = torch.log_softmax(theta, dim=-1)
    k = approx_kl(log_q, log_p, estimator)
    return _grad((log_q.exp().detach() * k).sum(), theta)


def test_approx_kl_values_hand():
    lp = T([-1.0, -2.0, -0.5])
    ref = T([-1.5, -1.0, -0.5])
    d = T([0.5, -1.0, 0.0])
    torch.testing.assert_close(log_ratio(lp, ref), d, **TOL)
    torch.testing.assert_close(approx_kl(lp, ref, "k1"), d, **TOL)
    torch.testing.assert_close(approx_kl(lp, ref, "k2"), T([0.125, 0.5, 0.0]), **TOL)
    k3 = T([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0, 0.0])
    torch.testing.assert_close(approx_kl(lp, ref, "k3"), k3, **TOL)


def test_expected_k1_and_k3_equal_reverse_kl():
    theta, log_p = _setup()
    log_q = torch.log_softmax(theta, dim=-1).detach()
    q = log_q.exp()
    exact = _kl(log_q, log_p)
    assert exact > 1e-2  # a non-trivial example
    torch.testing.assert_close((q * approx_kl(log_q, log_p, "k1")).sum(), exact, **TOL)
    torch.testing.assert_close((q * approx_kl(log_q, log_p, "k3")).sum(), exact, **TOL)


def test_k1_as_loss_has_zero_gradient():
    theta, log_p = _setup()
    g = _pathwise("k1", theta, log_p)
    torch.testing.assert_close(g, torch.zeros(V, dtype=F64), **TOL)
    # ...while the reverse KL itself does have a gradient here
    assert _grad(_kl(torch.log_softmax(theta, -1), log_p), theta).abs().max() > 1e-2


def test_k2_as_loss_gives_reverse_kl_gradient():
    theta, log_p = _setup()
    expected = _grad(_kl(torch.log_softmax(theta, -1), log_p), theta)
    torch.testing.assert_close(_pathwise("k2", theta, log_p), expected, **TOL)


def test_k3_as_loss_gives_forward_kl_gradient_not_reverse():
    theta, log_p = _setup()
    forward = _grad(_kl(log_p, torch.log_softmax(theta, -1)), theta)  # KL(p‖q)
    reverse = _grad(_kl(torch.log_softmax(theta, -1), log_p), theta)  # KL(q‖p)
    g = _pathwise("k3", theta, log_p)
    torch.testing.assert_close(g, forward, **TOL)
    assert (g - reverse).abs().max() > 1e-2


def test_k1_as_reward_through_score_function_is_unbiased_reverse_kl_gradient():
    theta, log_p = _setup()
    log_q = torch.log_softmax(theta, dim=-1)
    k1 = approx_kl(log_q, log_p, "k1").detach()
    surrogate = (log_q.exp().detach() * k1 * log_q).sum()  # E_q[k1 · ∇log q]
    expected = _grad(_kl(torch.log_softmax(theta, -1), log_p), theta)
    torch.testing.assert_close(_grad(surrogate, theta), expected, **TOL)


def _two_token_setup(seed=1):
    """q(a, b) = q1(a)·q2(b|a) with θ1 [V], θ2 [V, V]; p likewise, fixed. The second-token
    distribution depends on the first."""
    g = torch.Generator().manual_seed(seed)
    th1 = torch.randn(V, generator=g, dtype=F64).requires_grad_(True)
    th2 = (2 * torch.randn(V, V, generator=g, dtype=F64)).requires_grad_(True)
    lp1 = torch.log_softmax(torch.randn(V, generator=g, dtype=F64), -1)
    lp2 = torch.log_softmax(torch.randn(V, V, generator=g, dtype=F64), -1)
    a = torch.arange(V).repeat_interleave(V)  # all V² sequences (a, b)
    b = torch.arange(V).repeat(V)

    def logq():
        lq1 = torch.log_softmax(th1, -1)
        lq2 = torch.log_softmax(th2, -1)
        return lq1, lq2, torch.stack([lq1[a], lq2[a, b]], dim=1)  # [V², 2] per-token log q

    ref = torch.stack([lp1[a], lp2[a, b]], dim=1)
    return th1, th2, lp1, lp2, logq, ref


def test_sequence_kl_per_token_k2_misses_cross_terms_k1_return_to_go_is_exact():
    th1, th2, lp1, lp2, logq, ref = _two_token_setup()
    params = (th1, th2)

    lq1, lq2, tok = logq()
    seq_lq = tok.sum(-1)
    seq_kl = (seq_lq.exp() * (seq_lq - ref.sum(-1))).sum()
    exact = torch.autograd.grad(seq_kl, params)

    # per-token k2 as a loss (pathwise): Σ_seq q(seq)·Σ_t Δ_t²/2, weights detached
    lq1, lq2, tok = logq()
    w = tok.sum(-1).exp().detach()
    k2 = approx_kl(tok, ref, "k2")
    per_token = torch.autograd.grad((w * k2.sum(-1)).sum(), params)
    # it gets the θ2 part right but misses E_a[KL(q2(·|a)‖p2(·|a)) · ∇θ1 log q1(a)] in θ1
    torch.testing.assert_close(per_token[1], exact[1], **TOL)
    assert (per_token[0] - exact[0]).abs().max() > 1e-2
    lq1, lq2, _ = logq()
    kl2_given_a = (lq2.exp() * (lq2 - lp2)).sum(-1).detach()
    cross = torch.autograd.grad((lq1.exp().detach() * kl2_given_a * lq1).sum(), th1)[0]
    torch.testing.assert_close(per_token[0] + cross, exact[0], **TOL)

    # k1 as reward (β = 1, score 0), γ = 1 return-to-go, through the score function: exact
    lq1, lq2, tok = logq()
    w = tok.sum(-1).exp().detach()
    mask = torch.ones(V * V, 2, dtype=torch.bool)
    k1 = approx_kl(tok.detach(), ref, "k1")
    rewards = kl_penalized_rewards(torch.zeros(V * V, dtype=F64), k1, mask, kl_coef=1.0)
    ret = returns_to_go(rewards, mask, gamma=1.0)
    reinforce = (w[:, None] * ret * tok).sum()  # ascent direction of E[Σ r]
    grads = torch.autograd.grad(-reinforce, params)
    for got, want in zip(grads, exact):
        torch.testing.assert_close(got, want, **TOL)


def test_k3_clamps_log_ratio_and_stays_finite():
    lp = T([-200.0, 0.0, -1.0, 50.0]).requires_grad_(True)
    ref = T([0.0, -200.0, -1.0 - 10.0, 0.0])
    k3 = approx_kl(lp, ref, "k3")
    c = K3_LOG_RATIO_CLAMP
    expected = T([math.exp(c) - 1 - c, math.exp(-c) - 1 + c, math.exp(-c) - 1 + c, math.exp(-c) - 1 + c])
    torch.testing.assert_close(k3.detach(), expected, rtol=1e-15, atol=0)
    (g,) = torch.autograd.grad(k3.sum(), lp)
    assert torch.isfinite(g).all()
    assert g[0] == 0 and g[1] == 0 and g[3] == 0  # clamped region: no gradient
    assert g[2] != 0  # Δ = 10 exactly sits on the boundary (clamp passes the gradient)


def test_output_clamp_matches_openrlhf_estimate_clamp():
    lp = T([-5.0, 0.0, 30.0])
    ref = torch.zeros(3, dtype=F64)
    torch.testing.assert_close(approx_kl(lp, ref, "k1", output_clamp=10.0), T([-5.0, 0.0, 10.0]), **TOL)
    torch.testing.assert_close(approx_kl(lp, ref, "k2", output_clamp=10.0), T([10.0, 0.0, 10.0]), **TOL)
    torch.testing.assert_close(approx_kl(lp, ref, "k3", output_clamp=10.0)[0], T(10.0), **TOL)


def test_unknown_estimator_rejected():
    with pytest.raises(ValueError, match="k1"):
        approx_kl(torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64), "k4")


def test_last_valid_index_any_padding():
    mask = T(
        [
            [1, 1, 1, 0, 0],  # right padded
            [0, 0, 1, 1, 1],  # left padded
            [0, 1, 0, 1, 0],  # holes
            [0, 0, 0, 0, 0],  # empty
        ]
    )
    assert last_valid_index(mask).tolist() == [2, 4, 3, -1]


def test_kl_penalized_rewards_hand_computed_left_and_right_padding():
    score = T([1.0, -2.0, 0.5, 3.0])
    kl = T(
        [
            [0.1, 0.2, 0.3, 9.0],
            [9.0, 0.4, -0.2, 0.6],
            [0.2, 9.0, 0.1, 9.0],
            [0.5, 0.5, 0.5, 0.5],
        ]
    )
    kl[0, 3] = float("inf")  # garbage in padding must not leak
    mask = T(
        [
            [1, 1, 1, 0],  # right padded
            [0, 1, 1, 1],  # left padded
            [1, 0, 1, 0],  # a hole
            [0, 0, 0, 0],  # no valid token: no reward anywhere
        ]
    )
    beta = 0.5
    expected = T(
        [
            [-0.05, -0.1, -0.15 + 1.0, 0.0],
            [0.0, -0.2, 0.1, -0.3 - 2.0],
            [-0.1, 0.0, -0.05 + 0.5, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(kl_penalized_rewards(score, kl, mask, beta), expected, **TOL)
    torch.testing.assert_close(kl_penalized_rewards(score, kl, mask.bool(), beta), expected, **TOL)


def test_kl_penalized_rewards_zero_beta_is_score_at_last_token():
    score = T([2.0, 3.0])
    kl = torch.ones(2, 3, dtype=F64)
    mask = T([[1, 1, 0], [0, 1, 1]])
    out = kl_penalized_rewards(score, kl, mask, 0.0)
    torch.testing.assert_close(out, T([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]), **TOL)


def test_kl_penalized_rewards_rejects_bad_input():
    with pytest.raises(ValueError, match="kl_coef"):
        kl_penalized_rewards(torch.zeros(1), torch.zeros(1, 2), torch.ones(1, 2), -0.1)
    with pytest.raises(ValueError, match="score"):
        kl_penalized_rewards(torch.zeros(2), torch.zeros(1, 2), torch.ones(1, 2), 0.1)
