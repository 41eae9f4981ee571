"""Actor → engine weight sync through the broadcast group (gloo), for real: a ZeRO-3 actor of two
Ray ranks trains one step, the sync runs, and every engine's log-probs of the same samples equal
the actor's. Then the sync's failure modes."""

from __future__ import annotations

import pytest
from rlhf_train.config.loader import load_preset
from rlhf_train.errors import RunError
from rlhf_train.experience import batch_from_generation
from rlhf_train.rollout.base import SamplingParams
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir

from .conftest import TINY

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

ZERO3_TWO_RANKS = ["placement.mode=\"ray\"", "deepspeed.zero_stage=3", "placement.actor_workers=2",
                   "algo.kl_coef=0", "train.actor_lr=1e-2", "train.micro_train_batch_size=32",
                   "train.micro_rollout_batch_size=32", "rollout.max_new_tokens=4"]


def start(tmp_path, *overrides: str):
    from rlhf_train.distributed.build import build_ray_run

    preset = load_preset(TINY, [*ZERO3_TWO_RANKS, *overrides])
    rd = RunDir.create(preset, tmp_path / "run")
    return build_ray_run(preset, rd, Emitter(rd.events_path), {})


def engine_vs_actor(trainer) -> tuple[list[float], float]:
    """Max |engine − actor| log-prob over fresh samples, per engine; and the largest |log-prob| seen."""
    roles = trainer.roles
    prompts = [[1, 5 + i, 15, 6 + i, 18] for i in range(6)]
    generation = roles.engine.generate(prompts, SamplingParams(n=2, max_new_tokens=4, temperature=1.0, seed=7))
    batch = batch_from_generation(generation, roles.tokenizer.pad_token_id)
    actor = roles.actor.log_probs(batch)
    per_engine = roles.engine.response_log_probs(generation.prompt_ids, generation.response_ids)
    diffs = []
    for log_probs in per_engine:
        diffs.append(max(abs(lp - actor[i, t].item()) for i, row in enumerate(log_probs) for t, lp in enumerate(row)))
    return diffs, actor.abs().max().item()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("engines", [1, 2])
def test_after_a_training_step_every_engine_has_the_zero3_actors_weights(tmp_path, engines):
    trainer, run = start(tmp_path, f"rollout.num_engines={engines}", "rollout.weight_sync_bucket_mb=1")
    try:
        initial, _ = engine_vs_actor(trainer)
        assert initial == pytest.approx([0.0] * engines, abs=1e-5)  # both sides start from the same weights

        batch, _ = trainer.make_experience(next(trainer.batches), 1)
        trainer.roles.actor.fit(batch, 0.0, 1)
        stale, _ = engine_vs_actor(trainer)
        assert min(stale) > 1e-3  # an update at lr 1e-2 the engines have not seen yet

        trainer.push_weights()
        synced, scale = engine_vs_actor(trainer)
        assert max(synced) <= 1e-5 and scale > 0.1
        assert len(trainer.roles.weight_sync.plan) == 2  # 1.2 MB of float32 weights in 1 MiB buckets
        assert trainer.roles.weight_sync.mode == "broadcast"  # no GPU: no CUDA IPC

        metrics = trainer.step(2)  # the step's own sync phase
        assert metrics["time/weight_sync_s"] > 0
        after, _ = engine_vs_actor(trainer)
        assert max(after) <= 1e-5
    finally:
        run.close()


def test_an_engine_that_dies_mid_sync_ends_the_step_with_an_error_naming_it(tmp_path):
    import ray

    trainer, run = start(tmp_path, "placement.ready_timeout_s=5")
    try:
        trainer.push_weights()
        ray.kill(run.groups["engine"].handles[0], no_restart=True)
        with pytest.raises(RunError, match=r"the engine worker \(rank 0, pid \d+\) died"):
            trainer.push_weights()
    finally:
        run.close()
