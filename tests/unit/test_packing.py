"""Sample packing: exact fields of a small packed batch, the unpacking map, and bad input."""

from __future__ import annotations

import pytest
import torch

from rlhf_train.attention.packing import pack_rows, unpack_previous

# Two samples, prompt left-padded, response right-padded (num_actions = 3):
#   row 0:  pad 11 12 | 13 14 pad      → real tokens 11 12 13 14
#   row 1:  21 22 23  | 24 pad pad     → real tokens 21 22 23 24
SEQUENCES = torch.tensor([[0, 11, 12, 13, 14, 0], [21, 22, 23, 24, 0, 0]])
MASK = torch.tensor([[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])


def test_pack_rows_fields_with_padding_to_a_multiple():
    packed = pack_rows(SEQUENCES, MASK, 3, multiple=3, pad_id=0)
    assert packed.input_ids.tolist() == [11, 12, 13, 14, 21, 22, 23, 24, 0]
    assert packed.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert packed.segment_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert packed.cu_seqlens.tolist() == [0, 4, 8, 9]
    assert packed.source.tolist() == [[2, 3, -1], [7, -1, -1]]
    assert packed.next_token_ids(pad_id=0).tolist() == [12, 13, 14, 21, 22, 23, 24, 0, 0]


def test_pack_rows_without_padding_has_no_padding_segment():
    packed = pack_rows(SEQUENCES, MASK, 3)
    assert packed.length == 8 and packed.cu_seqlens.tolist() == [0, 4, 8]


def test_unpack_previous_reads_one_position_back_within_the_sample():
    packed = pack_rows(SEQUENCES, MASK, 3, multiple=3)
    values = torch.arange(9, dtype=torch.float64) * 10
    out = unpack_previous(values, packed, fill=-1.0)
    assert out.tolist() == [[10.0, 20.0, -1.0], [60.0, -1.0, -1.0]]
    logits = torch.arange(18.0).view(9, 2)
    assert unpack_previous(logits, packed).tolist() == [[[2.0, 3.0], [4.0, 5.0], [0.0, 0.0]],
                                                         [[12.0, 13.0], [0.0, 0.0], [0.0, 0.0]]]


def test_a_response_token_that_starts_its_sample_has_no_predecessor():
    packed = pack_rows(torch.tensor([[0, 0, 7, 8]]), torch.tensor([[0, 0, 1, 1]]), 2)
    assert unpack_previous(torch.tensor([5.0, 6.0]), packed, fill=9.0).tolist() == [[9.0, 5.0]]


def test_unpack_previous_is_differentiable():
    packed = pack_rows(SEQUENCES, MASK, 3)
    values = torch.ones(8, requires_grad=True)
    unpack_previous(values, packed).sum().backward()
    assert values.grad.tolist() == [0, 1, 1, 0, 0, 0, 1, 0]


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), 1), "one shape"),
    ((SEQUENCES, MASK, 0), "num_actions must be in [1, 6]"),
])
def test_bad_input_is_named(args, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pack_rows(*args)
