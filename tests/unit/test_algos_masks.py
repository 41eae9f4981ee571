"""Masked reductions and the padded / packed layouts."""

import pytest
import torch

from rlhf_train.algos import (
    aggregate_loss,
    masked_count,
    masked_mean,
    masked_sum,
    packed_to_padded,
    padded_to_packed,
)

F64 = torch.float64
TOL = dict(rtol=0, atol=1e-12)
NAN = float("nan")


def T(data):
    return torch.tensor(data, dtype=F64)


def test_masked_sum_mean_hand_with_garbage_and_empty_row():
    x = T([[1.0, 2.0, NAN], [NAN, float("inf"), 4.0], [NAN, NAN, NAN]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    torch.testing.assert_close(masked_sum(x, mask), T(7.0), **TOL)
    torch.testing.assert_close(masked_sum(x, mask, dim=-1), T([3.0, 4.0, 0.0]), **TOL)
    torch.testing.assert_close(masked_mean(x, mask), T(7.0 / 3), **TOL)
    torch.testing.assert_close(masked_mean(x, mask, dim=-1), T([1.5, 4.0, 0.0]), **TOL)
    torch.testing.assert_close(masked_mean(x, mask.bool(), dim=0), T([1.0, 2.0, 4.0]), **TOL)
    assert masked_count(mask, dim=-1).tolist() == [2, 1, 0]


def test_no_valid_token_gives_zero_and_finite_gradient():
    x = T([[1.0, 2.0], [3.0, 4.0]]).requires_grad_(True)
    mask = torch.zeros(2, 2)
    for value in (masked_mean(x, mask), aggregate_loss(x, mask, "token"), aggregate_loss(x, mask, "sequence")):
        assert value.item() == 0.0
        (g,) = torch.autograd.grad(value, x)
        assert (g == 0).all()


def test_mask_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="mask shape"):
        masked_mean(torch.zeros(2, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="token"):
        aggregate_loss(torch.zeros(2, 3), torch.ones(2, 3), "batch")


def test_aggregate_token_and_sequence_hand():
    x = T([[1.0, 3.0, 9.0], [4.0, 9.0, 9.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    torch.testing.assert_close(aggregate_loss(x, mask, "token"), T((1 + 3 + 4) / 3), **TOL)
    # rows (1+3)/2 = 2 and 4; the empty row has no loss term and does not count
    torch.testing.assert_close(aggregate_loss(x, mask, "sequence"), T(3.0), **TOL)


def test_pack_unpack_roundtrip_with_trailing_padding_and_extra_dims():
    lens = [3, 1, 0, 2]
    packed = torch.arange(8, dtype=F64).reshape(1, 8)  # 6 real entries, 2 trailing padding
    padded = packed_to_padded(packed, lens, pad_value=-1)
    expected = T([[0, 1, 2], [3, -1, -1], [-1, -1, -1], [4, 5, -1]])
    assert torch.equal(padded, expected)
    assert torch.equal(padded_to_packed(padded, lens), packed[:, :6])
    # extra trailing dims travel along (e.g. logits [1, T, V])
    packed3 = torch.arange(16, dtype=F64).reshape(1, 8, 2)
    padded3 = packed_to_padded(packed3, lens)
    assert padded3.shape == (4, 3, 2)
    assert torch.equal(padded3[3, :2], packed3[0, 4:6])
    assert torch.equal(padded_to_packed(padded3, lens), packed3[:, :6])
    # bool masks too
    m = packed_to_padded(torch.ones(1, 6, dtype=torch.bool), lens, pad_value=False)
    assert m.sum().item() == 6 and m.dtype == torch.bool


def test_layout_errors():
    with pytest.raises(ValueError, match="exceeds"):
        packed_to_padded(torch.zeros(1, 3), [2, 2])
    with pytest.raises(ValueError, match=r"\[1, T"):
        packed_to_padded(torch.zeros(2, 3), [1, 1])
    with pytest.raises(ValueError, match="lengths"):
        padded_to_packed(torch.zeros(2, 3), [1, 4])


def _same_data_both_layouts(values):
    """Padded [B, L] data/mask (right padded, a row with holes, an empty row, a row of length 0)
    and the same data packed with 3 entries of trailing padding."""
    lens = [4, 2, 5, 0, 3]
    L = 6
    valid = [[1, 1, 1, 0], [1, 1], [0, 1, 1, 0, 1], [], [0, 0, 0]]
    B = len(lens)
    x_pad = torch.full((B, L), NAN, dtype=F64)
    m_pad = torch.zeros(B, L, dtype=torch.bool)
    k = 0
    for i, n in enumerate(lens):
        x_pad[i, :n] = values[k : k + n]
        m_pad[i, :n] = torch.tensor(valid[i], dtype=torch.bool)
        k += n
    x_packed = torch.cat([padded_to_packed(x_pad, lens), torch.full((1, 3), NAN, dtype=F64)], dim=1)
    m_packed = torch.cat([padded_to_packed(m_pad, lens), torch.ones(1, 3, dtype=torch.bool)], dim=1)
    return lens, x_pad, m_pad, x_packed, m_packed


@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_padded_and_packed_aggregate_identically(mode):
    # dyadic values: every sum is exact in any order, so the two layouts must agree bit for bit
    dyadic = torch.arange(14, dtype=F64) / 8 - 0.75
    lens, x_pad, m_pad, x_packed, m_packed = _same_data_both_layouts(dyadic)
    a = aggregate_loss(x_pad, m_pad, mode)
    b = aggregate_loss(x_packed, m_packed, mode, seq_lens=lens)
    assert torch.equal(a, b)
    assert torch.isfinite(a)
    # random values: equal to rounding
    rnd = torch.randn(14, generator=torch.Generator().manual_seed(0), dtype=F64)
    lens, x_pad, m_pad, x_packed, m_packed = _same_data_both_layouts(rnd)
    x_packed.requires_grad_(True)
    a = aggregate_loss(x_pad, m_pad, mode)
    b = aggregate_loss(x_packed, m_packed, mode, seq_lens=lens)
    torch.testing.assert_close(a, b, **TOL)
    # gradient lands on every valid packed entry and nowhere else
    (g,) = torch.autograd.grad(b, x_packed)
    real, real_mask = g[:, :14], m_packed[:, :14]
    assert (real[real_mask] != 0).all() and (real[~real_mask] == 0).all()
    assert (g[0, 14:] == 0).all()  # trailing padding is ignored even where its mask says 1


def test_sequence_mode_weighs_sequences_equally():
    # a long row and a short row: token mode weighs tokens, sequence mode weighs rows
    x = T([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    torch.testing.assert_close(aggregate_loss(x, mask, "token"), T(9.0 / 5), **TOL)
    torch.testing.assert_close(aggregate_loss(x, mask, "sequence"), T(3.0), **TOL)
