"""The Ray path on a GPU (skipped without CUDA): the tiny preset with every role colocated on one
GPU (fractional shares), DeepSpeed over nccl."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import events, metric_series, run_cli, run_info

pytestmark = pytest.mark.gpu

ONE_GPU = ('placement.mode="ray"', "placement.gpus_per_node=1", 'placement.colocate="all"', "train.max_steps=3",
           "train.micro_train_batch_size=32")


def test_colocate_all_on_one_gpu_over_nccl(tmp_path):
    run = tmp_path / "run"
    assert run_cli(run, *ONE_GPU) == 0, run_info(run).get("reason")
    assert run_info(run)["status"] == "finished"
    (placed,) = [e for e in events(run, "log") if "workers" in e]
    assert sorted(w["role"] for w in placed["workers"]) == ["actor", "engine", "reference"]
    assert "torch.distributed backend nccl on cuda:0" in (run / "workers" / "actor-0.log").read_text()
    assert len(metric_series(run, "train/policy_loss")) == 3
    gpu = [e for e in events(run, "gpu") if e.get("devices")]
    assert gpu, "NVML readings on a GPU machine"
    roles = {p.get("role") for e in gpu for d in e["devices"] for p in (d.get("processes") or [])}
    assert roles & {"actor", "reference", "engine"}, json.dumps(gpu[-1])[:2000]
