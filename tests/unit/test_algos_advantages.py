"""Returns, GAE and the score shaping of the critic-free estimators, against float64 loop
references written from the definitions."""

import pytest
import torch

from rlhf_train.algos import (
    ADVANTAGE_ESTIMATORS,
    baseline_scores,
    compute_advantages,
    gae,
    group_norm_scores,
    kl_penalized_rewards,
    normalize_advantages,
    returns_to_go,
    rloo_scores,
)

F64 = torch.float64
TOL = dict(rtol=0, atol=1e-12)

# right padded, left padded, full, a hole, one token, empty
MASK = torch.tensor(
    [
        [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 0, 0, 1, 1],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]
)


def _random(seed=0, shape=MASK.shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64), torch.randn(shape, generator=g, dtype=F64)


def _brute_force(rewards, values, mask, gamma, lambd):
    """A_t = Σ_{k≥t} (γλ)^(k−t) δ_k over each row's valid tokens, δ_k = r_k + γ V_{k+1} − V_k,
    V after the last valid token = 0; returns G_t = Σ_{k≥t} γ^(k−t) r_k. Plain Python loops."""
    B, T = rewards.shape
    adv = torch.zeros(B, T, dtype=F64)
    ret = torch.zeros(B, T, dtype=F64)
    for i in range(B):
        idx = [t for t in range(T) if mask[i, t]]
        n = len(idx)
        deltas = []
        for k in range(n):
            v_next = values[i, idx[k + 1]].item() if k + 1 < n else 0.0
            deltas.append(rewards[i, idx[k]].item() + gamma * v_next - values[i, idx[k]].item())
        for k in range(n):
            adv[i, idx[k]] = sum((gamma * lambd) ** (j - k) * deltas[j] for j in range(k, n))
            ret[i, idx[k]] = sum(gamma ** (j - k) * rewards[i, idx[j]].item() for j in range(k, n))
    return adv, ret


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_returns_to_go_matches_loop(gamma):
    rewards, _ = _random(1)
    rewards[MASK == 0] = float("nan")  # padding garbage must not leak
    _, expected = _brute_force(torch.nan_to_num(rewards), torch.zeros_like(rewards), MASK, gamma, 1.0)
    torch.testing.assert_close(returns_to_go(rewards, MASK, gamma), expected, **TOL)


def test_returns_to_go_hand():
    rewards = torch.tensor([[1.0, 2.0, 4.0, 0.0], [0.0, 1.0, 0.0, 3.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    expected = torch.tensor([[1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4, 0], [0, 1 + 0.25 * 3, 1.5, 3]], dtype=F64)
    torch.testing.assert_close(returns_to_go(rewards, mask, 0.5), expected, **TOL)


@pytest.mark.parametrize("gamma,lambd", [(1.0, 0.95), (0.9, 0.8), (0.99, 0.0), (0.7, 1.0)])
def test_gae_matches_brute_force(gamma, lambd):
    rewards, values = _random(2)
    adv_ref, _ = _brute_force(rewards, values, MASK, gamma, lambd)
    adv, ret = gae(rewards, values, MASK, gamma, lambd)
    torch.testing.assert_close(adv, adv_ref, **TOL)
    torch.testing.assert_close(ret, torch.where(MASK.bool(), adv_ref + values, torch.zeros((), dtype=F64)), **TOL)


def test_gae_lambda_one_gamma_one_is_return_to_go_minus_value():
    rewards, values = _random(3)
    adv, ret = gae(rewards, values, MASK, 1.0, 1.0)
    rtg = returns_to_go(rewards, MASK, 1.0)
    torch.testing.assert_close(adv, torch.where(MASK.bool(), rtg - values, torch.zeros((), dtype=F64)), **TOL)
    torch.testing.assert_close(ret, rtg, **TOL)


def test_gae_lambda_zero_is_one_step_td():
    rewards = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64)
    values = torch.tensor([[0.5, 0.25, 2.0]], dtype=F64)
    mask = torch.ones(1, 3)
    adv, _ = gae(rewards, values, mask, 0.5, 0.0)
    expected = torch.tensor([[1 + 0.5 * 0.25 - 0.5, 2 + 0.5 * 2.0 - 0.25, 3 - 2.0]], dtype=F64)
    torch.testing.assert_close(adv, expected, **TOL)


SCORES = torch.tensor([1.0, 0.0, 0.5, 2.0, -1.0, 3.0, 3.0, 3.0, 0.25, 0.75, 0.0, 1.0], dtype=F64)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_group_norm_zero_mean_unit_unbiased_std(n):
    eps = 1e-9
    out = group_norm_scores(SCORES, n, std_norm=True, eps=eps).reshape(-1, n)
    torch.testing.assert_close(out.mean(-1), torch.zeros(len(SCORES) // n, dtype=F64), **TOL)
    std = SCORES.reshape(-1, n).std(-1)  # unbiased (Bessel)
    expected_std = std / (std + eps)  # 1 up to ε; a constant group gives 0
    torch.testing.assert_close(out.std(-1), expected_std, **TOL)


def test_group_norm_hand_and_no_std():
    s = torch.tensor([1.0, 3.0, 0.0, 0.0], dtype=F64)
    # group (1, 3): mean 2, unbiased std √2; group (0, 0): all zero
    expected = torch.tensor([-1 / (2**0.5 + 1e-9), 1 / (2**0.5 + 1e-9), 0.0, 0.0], dtype=F64)
    torch.testing.assert_close(group_norm_scores(s, 2), expected, **TOL)
    no_std = group_norm_scores(s, 2, std_norm=False)
    torch.testing.assert_close(no_std, torch.tensor([-1.0, 1.0, 0.0, 0.0], dtype=F64), **TOL)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_rloo_and_baseline_match_loop_definitions(n):
    loo = torch.zeros_like(SCORES)
    base = torch.zeros_like(SCORES)
    for i in range(len(SCORES)):
        g0 = (i // n) * n
        others = [SCORES[j].item() for j in range(g0, g0 + n) if j != i]
        loo[i] = SCORES[i] - sum(others) / len(others)
        base[i] = SCORES[i] - sum(SCORES[j].item() for j in range(g0, g0 + n)) / n
    torch.testing.assert_close(rloo_scores(SCORES, n), loo, **TOL)
    torch.testing.assert_close(baseline_scores(SCORES, n), base, **TOL)


def test_shaping_rejects_bad_groups():
    with pytest.raises(ValueError, match="n_samples_per_prompt >= 2"):
        rloo_scores(SCORES, 1)
    with pytest.raises(ValueError, match="groups of n_samples_per_prompt=5"):
        baseline_scores(SCORES, 5)
    with pytest.raises(ValueError, match=">= 2"):
        group_norm_scores(SCORES, 1)


def test_normalize_advantages_whitens_valid_tokens():
    adv, _ = _random(4)
    adv[MASK == 0] = 1e6
    out = normalize_advantages(adv, MASK)
    m = MASK.bool()
    valid = out[m]
    torch.testing.assert_close(valid.mean(), torch.zeros((), dtype=F64), **TOL)
    torch.testing.assert_close(valid.var(unbiased=False), torch.ones((), dtype=F64), **TOL)
    assert (out[~m] == 0).all()
    # an exactly constant batch: variance clamped at ε, centred values are 0
    const = normalize_advantages(torch.full(MASK.shape, 2.5, dtype=F64), MASK)
    assert (const == 0).all()


def test_compute_advantages_dispatch():
    B, T, n = 6, 4, 3
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(B, generator=g, dtype=F64)
    kl = torch.rand(B, T, generator=g, dtype=F64)
    values = torch.randn(B, T, generator=g, dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]])
    beta, gamma, lambd = 0.1, 0.95, 0.9
    common = dict(
        scores=scores, kl=kl, action_mask=mask, kl_coef=beta, n_samples_per_prompt=n, gamma=gamma, lambd=lambd
    )

    def rtg(shaped):
        return returns_to_go(kl_penalized_rewards(shaped, kl, mask, beta), mask, gamma)

    shaped = {
        "reinforce": scores,
        "rloo": rloo_scores(scores, n),
        "reinforce_baseline": baseline_scores(scores, n),
        "group_norm": group_norm_scores(scores, n),
    }
    for est, s in shaped.items():
        adv, ret = compute_advantages(est, **common)
        torch.testing.assert_close(ret, rtg(s), **TOL)
        torch.testing.assert_close(adv, ret, **TOL)
        assert adv.data_ptr() != ret.data_ptr()
    adv, ret = compute_advantages("gae", values=values, **common)
    adv_ref, ret_ref = gae(kl_penalized_rewards(scores, kl, mask, beta), values, mask, gamma, lambd)
    torch.testing.assert_close(adv, adv_ref, **TOL)
    torch.testing.assert_close(ret, ret_ref, **TOL)
    g0 = compute_advantages("group_norm", std_norm=False, **common)[0]
    torch.testing.assert_close(g0, rtg(baseline_scores(scores, n)), **TOL)
    assert set(ADVANTAGE_ESTIMATORS) == set(shaped) | {"gae"}


def test_compute_advantages_errors():
    common = dict(
        scores=torch.zeros(4, dtype=F64),
        kl=torch.zeros(4, 2, dtype=F64),
        action_mask=torch.ones(4, 2),
        kl_coef=0.0,
        n_samples_per_prompt=2,
    )
    with pytest.raises(ValueError, match="values"):
        compute_advantages("gae", **common)
    with pytest.raises(ValueError, match="one of"):
        compute_advantages("ppo", **common)
    with pytest.raises(ValueError, match="n_samples_per_prompt=3"):
        compute_advantages("reinforce", **{**common, "n_samples_per_prompt": 3})
