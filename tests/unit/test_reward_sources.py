"""Reward normalisation (float64 reference), the critic initialised from a reward model, the
reward source's checks, and the eval prompts' held-out split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlhf_train.config.schema import Preset
from rlhf_train.data.prompts import DatasetError
from rlhf_train.errors import RunError
from rlhf_train.rewards.evaluation import eval_sampling, is_eval_step, load_eval_prompts
from rlhf_train.rewards.normalize import RunningNormalizer
from rlhf_train.rewards.source import RewardSource, make_reward_source


def test_running_normalizer_equals_float64_statistics_of_everything_seen():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=n) for n in (8, 1, 16, 5)]
    norm, seen = RunningNormalizer(), []
    for batch in batches:
        seen.extend(batch)
        out = norm(torch.tensor(batch, dtype=torch.float32))
        mean, std = np.mean(seen), np.std(np.asarray(seen, dtype=np.float32).astype(np.float64))
        assert norm.count == len(seen)
        assert norm.mean == pytest.approx(np.mean(np.asarray(seen, dtype=np.float32), dtype=np.float64), rel=1e-12)
        assert norm.var ** 0.5 == pytest.approx(std, rel=1e-9)
        np.testing.assert_allclose(out.numpy(), (np.float32(batch) - mean) / std, rtol=1e-5, atol=1e-6)


def test_a_normalizer_restored_from_its_state_continues_exactly():
    """Resume: the statistics saved in a checkpoint give the same normalised scores afterwards."""
    rng = np.random.default_rng(1)
    batches = [torch.tensor(rng.normal(0.5, 1.5, size=8), dtype=torch.float32) for _ in range(4)]
    whole = RunningNormalizer()
    for batch in batches[:2]:
        whole(batch)
    resumed = RunningNormalizer()
    resumed.load_state(json.loads(json.dumps(whole.state())))  # as trainer.json holds it
    for batch in batches[2:]:
        assert torch.equal(resumed(batch), whole(batch))
    assert resumed.state() == whole.state()


def test_constant_scores_do_not_divide_by_zero():
    out = RunningNormalizer()(torch.ones(4))
    assert torch.equal(out, torch.zeros(4))


def test_source_normalizes_training_scores_but_not_raw_scores():
    source = RewardSource("fixed", lambda p, r, l: [1.0, 3.0], normalize=True)
    assert source.raw_scores(["a", "b"], ["", ""], ["", ""]).tolist() == [1.0, 3.0]
    assert source.scores(["a", "b"], ["", ""], ["", ""]).tolist() == [-1.0, 1.0]
    assert source.take_stats() == {"reward/raw_mean": 2.0}
    assert source.take_stats() == {}


def test_source_rejects_a_wrong_count():
    source = RewardSource("short", lambda p, r, l: [1.0])
    with pytest.raises(RunError, match=r"reward short gave \(1,\) scores for 2 samples"):
        source.scores(["a", "b"], ["", ""], ["", ""])


def test_remote_source_from_the_preset_uses_its_settings():
    preset = Preset.model_validate({"reward": {"kind": "remote", "urls": "http://127.0.0.1:9/r", "timeout_s": 2.5,
                                               "retries": 7, "backoff_s": 0.25, "backoff_max_s": 4.0, "jitter": 0.0,
                                               "batch_size": 16, "max_concurrency": 3}})
    source = make_reward_source(preset)
    client = source._score_fn
    try:
        assert client.urls == ["http://127.0.0.1:9/r"] and client.batch_size == 16
        assert (client.policy.timeout_s, client.policy.retries, client.policy.backoff_s, client.policy.backoff_max_s,
                client.policy.jitter) == (2.5, 7, 0.25, 4.0, 0.0)
        assert client._pool._max_workers == 3
    finally:
        source.close()


def test_critic_starts_from_the_reward_model(tmp_path):
    from rlhf_train.models.critic import Critic
    from rlhf_train.models.reward_model import RewardModel

    rm, tokenizer = RewardModel.from_spec("builtin:tiny", seed=5)
    rm.save_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    preset = Preset.model_validate({"algo": {"name": "ppo"}, "reward": {"kind": "model", "model": str(tmp_path / "rm")}})
    assert preset.critic_init == str(tmp_path / "rm")
    critic, _ = Critic.from_spec(preset.critic_init, seed=99)
    assert torch.equal(critic.value_head.weight, rm.score.weight)
    for name, tensor in rm.backbone.state_dict().items():
        assert torch.equal(critic.backbone.state_dict()[name], tensor), name
    # an explicit [model].critic wins; without a reward model the actor is the start
    assert Preset.model_validate({"model": {"critic": "c/"}, "reward": {"kind": "model", "model": "rm/"}}).critic_init == "c/"
    assert Preset().critic_init == "builtin:tiny"


def test_eval_prompts_are_a_held_out_draw_of_the_builtin_task():
    preset = Preset.model_validate({"eval": {"every_steps": 5, "num_prompts": 12}})
    records = load_eval_prompts(preset)
    assert len(records) == 12
    training = load_eval_prompts(Preset.model_validate({"eval": {"every_steps": 5, "num_prompts": 12}, "run": {"seed": 42}}))
    assert [r.prompt for r in records] == [r.prompt for r in training]  # a pure function of the seed
    from rlhf_train.data.prompts import load_prompts

    train_stream = load_prompts("builtin:arith", max_samples=12, seed=preset.run.seed)
    assert [r.prompt for r in records] != [r.prompt for r in train_stream]
    assert load_eval_prompts(Preset()) == []  # eval off


def test_eval_prompts_from_a_file(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(f'{{"input": "{i} + 0 =", "label": "{i}"}}\n' for i in range(5)))
    preset = Preset.model_validate({"eval": {"every_steps": 1, "num_prompts": 3, "prompt_data": str(path)}})
    assert [(r.prompt, r.label) for r in load_eval_prompts(preset)] == [("0 + 0 =", "0"), ("1 + 0 =", "1"),
                                                                        ("2 + 0 =", "2")]
    with pytest.raises(DatasetError, match="does not exist"):
        load_eval_prompts(Preset.model_validate({"eval": {"every_steps": 1, "prompt_data": str(tmp_path / "no.jsonl")}}))


def test_eval_steps_and_sampling():
    preset = Preset.model_validate({"eval": {"every_steps": 4}, "rollout": {"temperature": 0.7}})
    assert [s for s in range(1, 11) if is_eval_step(preset, s, last_step=10)] == [4, 8, 10]
    assert not any(is_eval_step(Preset(), s, 10) for s in range(1, 11))
    assert eval_sampling(preset, 3).temperature == 0.0 and eval_sampling(preset, 3).n == 1
    sampled = Preset.model_validate({"eval": {"every_steps": 4, "greedy": False}, "rollout": {"temperature": 0.7}})
    assert eval_sampling(sampled, 3).temperature == 0.7
    assert eval_sampling(sampled, 3).seed != eval_sampling(sampled, 4).seed
