"""Which accelerator a Ray worker uses.

Ray normally narrows each worker's visible devices to the ones it assigned (CUDA_VISIBLE_DEVICES
= "3" for GPU 3), so the worker's device is index 0 — or, for a worker given several, the position
among them. With a `RAY_EXPERIMENTAL_NOSET_*_VISIBLE_DEVICES` variable set (vLLM's own executor
needs this), Ray leaves every device visible and the worker must pick its assigned id itself.
Getting this wrong puts every colocated worker on GPU 0.
"""

from __future__ import annotations

from collections.abc import Mapping

NOSET_VISIBLE_DEVICES = (
    "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES",
    "RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES",
    "RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES",
    "RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES",
    "RAY_EXPERIMENTAL_NOSET_HABANA_VISIBLE_MODULES",
    "RAY_EXPERIMENTAL_NOSET_NEURON_RT_VISIBLE_CORES",
    "RAY_EXPERIMENTAL_NOSET_TPU_VISIBLE_CHIPS",
    "RAY_EXPERIMENTAL_NOSET_ONEAPI_DEVICE_SELECTOR",
)


def ray_sets_visible_devices(env: Mapping[str, str]) -> bool:
    """False when one of Ray's NOSET variables is set (to anything but empty or "0")."""
    return not any(env.get(name, "") not in ("", "0") for name in NOSET_VISIBLE_DEVICES)


def local_device_index(assigned: list[str | int], env: Mapping[str, str], which: int = 0) -> int:
    """The device index, as this process sees devices, of its `which`-th assigned accelerator
    (`assigned` = `ray.get_accelerator_ids()["GPU"]` / `ray.get_gpu_ids()`, in Ray's order).

    Ray narrowed visibility: the assigned devices are renumbered 0, 1, … in sorted id order.
    Ray left all visible: the index is the assigned id itself."""
    if not assigned:
        raise ValueError("this worker was assigned no accelerator")
    if which >= len(assigned):
        raise ValueError(f"accelerator {which} asked for, but only {len(assigned)} assigned ({assigned})")
    ids = [int(i) for i in assigned]
    if not ray_sets_visible_devices(env):
        return ids[which]
    return sorted(ids).index(ids[which])
