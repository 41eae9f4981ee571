"""A Ray worker's device index with and without Ray narrowing the visible devices."""

from __future__ import annotations

import pytest

from rlhf_train.distributed.devices import NOSET_VISIBLE_DEVICES, local_device_index, ray_sets_visible_devices

NOSET = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}


def test_ray_narrows_visibility_unless_a_noset_variable_is_set():
    assert ray_sets_visible_devices({})
    assert ray_sets_visible_devices({"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "0"})
    assert ray_sets_visible_devices({"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": ""})
    for name in NOSET_VISIBLE_DEVICES:
        assert not ray_sets_visible_devices({name: "1"}), name


@pytest.mark.parametrize("assigned, which, narrowed, noset", [
    (["3"], 0, 0, 3),            # one GPU: device 0 when Ray narrowed, GPU 3 when it did not
    ([5], 0, 0, 5),
    (["6", "7"], 1, 1, 7),       # a TP-2 worker's second GPU
    (["7", "6"], 0, 1, 7),       # Ray's order is not sorted; CUDA renumbers in id order
    (["2", "0", "1"], 2, 1, 1),
])
def test_local_device_index(assigned, which, narrowed, noset):
    assert local_device_index(assigned, {}, which) == narrowed
    assert local_device_index(assigned, NOSET, which) == noset


def test_no_or_too_few_assigned_devices_is_an_error():
    with pytest.raises(ValueError, match="assigned no accelerator"):
        local_device_index([], {})
    with pytest.raises(ValueError, match=r"accelerator 1 asked for, but only 1 assigned \(\['0'\]\)"):
        local_device_index(["0"], {}, 1)
