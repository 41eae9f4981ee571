"""Shared test helpers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "presets").glob("*.toml"))


def pytest_collection_modifyitems(config, items):
    """Tests under tests/gpu/ need CUDA; skip them (with the reason) where there is none."""
    gpu_items = [item for item in items if "tests/gpu/" in str(item.fspath).replace("\\", "/")]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (run on a lent GPU machine)"))


@pytest.fixture
def minimal_raw() -> dict:
    """A small valid preset as a TOML-shaped dict (copy it freely)."""
    return copy.deepcopy({
        "schema_version": 1,
        "run": {"name": "t"},
        "rollout": {"n_samples_per_prompt": 4},
        "algo": {"name": "grpo"},
        "train": {"rollout_batch_size": 4, "train_batch_size": 8, "micro_train_batch_size": 2},
    })


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster per test module that asks for it (`usefixtures("ray_cluster")`): runs
    in the module find Ray initialised and leave it running. 8 logical CPUs on this 2-core machine:
    the roles ask for fractions of one."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
