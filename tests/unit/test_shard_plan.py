"""`fit_plan`: how a global batch is cut into optimizer steps, ranks and micro-batches."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rlhf_train.config.schema import TrainConfig
from rlhf_train.errors import RunError
from rlhf_train.roles import accumulation_steps, fit_plan


def train(step: int, micro: int, epochs: int = 1) -> TrainConfig:
    return TrainConfig(train_batch_size=step, micro_train_batch_size=micro, max_epochs=epochs)


def as_lists(step: list[torch.Tensor]) -> list[list[int]]:
    return [micro.tolist() for micro in step]


shapes = st.tuples(st.integers(1, 4), st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 3),
                   st.integers(1, 3), st.integers(0, 1000))


@given(shapes)
def test_every_sample_once_per_epoch_and_ranks_together_equal_one_rank(shape):
    micro, accumulation, dp, steps, epochs, seed = shape
    config = train(micro * accumulation * dp, micro, epochs)
    size = steps * config.train_batch_size
    one = fit_plan(size, config, 1, 0, seed)
    ranks = [fit_plan(size, config, dp, r, seed) for r in range(dp)]
    assert len(one) == steps * epochs and all(len(plan) == len(one) for plan in ranks)
    for k in range(len(one)):
        assert [len(m) for m in one[k]] == [micro] * accumulation * dp
        assert all(len(plan[k]) == accumulation_steps(config, dp) for plan in ranks)
        assert sum((as_lists(plan[k]) for plan in ranks), []) == as_lists(one[k])  # the same micro-batches
    for epoch in range(epochs):
        block = [i for step in one[epoch * steps:(epoch + 1) * steps] for m in step for i in m.tolist()]
        assert sorted(block) == list(range(size))


def test_one_rank_keeps_the_local_order_of_earlier_versions():
    """dp = 1 is the seeded permutation cut into consecutive micro-batches, as the local fit always did."""
    config = train(8, 2, epochs=2)
    generator = torch.Generator().manual_seed(5)
    orders = [torch.randperm(16, generator=generator) for _ in range(2)]
    legacy = [order[i:i + 2].tolist() for order in orders for i in range(0, 16, 2)]
    plan = fit_plan(16, config, 1, 0, 5)
    assert [m for step in plan for m in as_lists(step)] == legacy


def test_rank_takes_the_contiguous_slice_of_each_step():
    plan = [fit_plan(8, train(4, 1), 2, r, 0) for r in range(2)]
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0)).tolist()
    assert as_lists(plan[0][0]) == [[order[0]], [order[1]]]
    assert as_lists(plan[1][0]) == [[order[2]], [order[3]]]
    assert as_lists(plan[1][1]) == [[order[6]], [order[7]]]


def test_bad_rank_and_sizes_are_refused():
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, 2\)"):
        fit_plan(8, train(4, 2), 2, 2, 0)
    with pytest.raises(RunError, match="not a multiple of micro_train_batch_size × data-parallel ranks"):
        fit_plan(8, train(4, 4), 2, 0, 0)
    with pytest.raises(RunError, match="12 samples are not a whole number of optimizer steps"):
        fit_plan(12, train(8, 2), 1, 0, 0)
