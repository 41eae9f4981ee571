"""The roles trained through DeepSpeed on 1 and 2 gloo ranks (spawned processes, CPU).

Exactness: with the same global batch and seed, 2 ranks (ZeRO-0/1/2/3) give the loss trajectory,
the reported statistics and the final weights of 1 rank; the 1-rank DeepSpeed actor follows the
local (torch AdamW) actor. ZeRO-3 offload/reload between fits changes nothing; the reference (plain
and ZeRO-3) gives the local log-probs; the actor saves a loadable Hugging Face model from rank 0.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from transformers.utils import logging as transformers_logging

from rlhf_train.config.schema import Preset
from rlhf_train.errors import RunError
from rlhf_train.experience import ExperienceBatch
from rlhf_train.models.actor import Actor
from rlhf_train.models.critic import Critic
from rlhf_train.models.tiny import build_tiny_model, build_tiny_tokenizer
from rlhf_train.roles import LOCAL, ActorRole, Backend, CriticRole, ReferenceRole

pytestmark = pytest.mark.slow

STAGES = (0, 1, 2, 3)
FITS = 3  # × 2 optimizer steps each
SAMPLES, PROMPT, RESPONSE = 16, 5, 4
RTOL = 1e-4


def make_preset(stage: int, world: int) -> Preset:
    return Preset.model_validate({
        "algo": {"name": "ppo", "use_kl_loss": True, "kl_coef": 0.1, "kl_estimator": "k3", "entropy_coef": 0.01},
        "train": {"train_batch_size": 8, "micro_train_batch_size": 2, "micro_rollout_batch_size": 4,
                  "actor_lr": 2e-3, "critic_lr": 2e-3, "lr_warmup_ratio": 0.2, "max_norm": 1.0,
                  "weight_decay": 0.01},
        "deepspeed": {"zero_stage": stage},
        "placement": {"mode": "ray", "actor_workers": world},
    })


def make_batch() -> ExperienceBatch:
    """A fixed batch: random tokens, ragged responses, log-probs of the initial policy."""
    g = torch.Generator().manual_seed(7)
    vocab = build_tiny_model(0).config.vocab_size
    sequences = torch.randint(4, vocab, (SAMPLES, PROMPT + RESPONSE), generator=g)
    lengths = torch.randint(1, RESPONSE + 1, (SAMPLES,), generator=g)
    action_mask = (torch.arange(RESPONSE)[None, :] < lengths[:, None]).long()
    attention_mask = torch.cat([torch.ones(SAMPLES, PROMPT, dtype=torch.long), action_mask], dim=1)
    batch = ExperienceBatch(sequences=sequences, attention_mask=attention_mask, action_mask=action_mask)
    with torch.no_grad():
        batch.old_log_probs = Actor(build_tiny_model(0))(sequences, attention_mask, RESPONSE)
    batch.ref_log_probs = batch.old_log_probs - 0.05 * torch.rand(SAMPLES, RESPONSE, generator=g)
    batch.advantages = torch.randn(SAMPLES, RESPONSE, generator=g) * action_mask
    batch.values = 0.1 * torch.randn(SAMPLES, RESPONSE, generator=g) * action_mask
    batch.returns = torch.randn(SAMPLES, RESPONSE, generator=g) * action_mask
    return batch


def train_roles(preset: Preset, backend: Backend = LOCAL, offload: bool = False) -> tuple[dict, ActorRole]:
    """Fit a fresh actor and critic FITS times on the fixed batch; their statistics, the actor's
    final weights and (offload) the offload/reload timings, and the actor."""
    batch = make_batch()
    actor = ActorRole(Actor(build_tiny_model(0)), preset, 2 * FITS, backend)
    critic = CriticRole(Critic(build_tiny_model(0), seed=0), preset, 2 * FITS, backend)
    out: dict = {"actor": [], "critic": [], "moves": []}
    for k in range(FITS):
        out["critic"].append(critic.fit(batch, seed=k))
        out["actor"].append(actor.fit(batch, kl_coef=0.1, seed=k))
        if offload:
            out["moves"] += [actor.offload().seconds, actor.reload().seconds]
    out["state"] = actor.state_dict()
    return out, actor


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One gloo rank: every stage of STAGES in turn; rank r writes `rank{r}.pt`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    transformers_logging.disable_progress_bar()
    from rlhf_train.distributed.strategy import DeepSpeedStrategy

    strategy = DeepSpeedStrategy()
    results: dict = {}
    for stage in STAGES:
        preset = make_preset(stage, world)
        t0 = time.perf_counter()
        run, actor = train_roles(preset, strategy, offload=stage == 3 and world == 2)
        run["seconds"] = time.perf_counter() - t0
        mine = make_batch().select(slice(rank * SAMPLES // world, (rank + 1) * SAMPLES // world))
        run["reference"] = ReferenceRole(Actor(build_tiny_model(0)), preset, strategy).log_probs(mine)
        if stage == 3:
            actor.save(Path(out_dir) / f"saved{world}", build_tiny_tokenizer())
        else:
            try:
                actor.offload()
            except RunError as error:
                run["offload_error"] = str(error)
        results[stage] = run
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> dict:
    """world → the results of each of its ranks (and "dirs": world → output directory); the 1- and
    2-rank groups run at the same time."""
    dirs = {world: tmp_path_factory.mktemp(f"world{world}") for world in (1, 2)}
    t0 = time.perf_counter()
    contexts = {world: mp.start_processes(_worker, args=(world, free_port(), str(dirs[world])), nprocs=world,
                                          join=False, start_method="spawn") for world in (1, 2)}
    for context in contexts.values():
        while not context.join():
            pass
    results = {world: [torch.load(dirs[world] / f"rank{r}.pt", weights_only=False) for r in range(world)]
               for world in (1, 2)}
    seconds = {f"{world} rank(s) ZeRO-{stage}": round(results[world][0][stage]["seconds"], 1)
               for world in (1, 2) for stage in STAGES}
    print(f"\nDeepSpeed 1- and 2-rank runs: {time.perf_counter() - t0:.1f} s in all; fits: {seconds}")
    return results | {"dirs": dirs}


def assert_stats_close(got: list[dict], want: list[dict], rtol: float) -> None:
    assert [sorted(s) for s in got] == [sorted(s) for s in want]
    for fit, (g, w) in enumerate(zip(got, want)):
        for name in w:
            assert g[name] == pytest.approx(w[name], rel=rtol, abs=1e-7), f"fit {fit}: {name}"


@pytest.mark.parametrize("stage", STAGES)
def test_two_ranks_follow_one_rank(ranks, stage):
    one, two = ranks[1][0][stage], ranks[2][0][stage]
    worst = max(abs(t[name] - o[name]) / max(abs(o[name]), 1e-12) for role in ("actor", "critic")
                for t, o in zip(two[role], one[role]) for name in o)
    print(f"\nZeRO-{stage} policy_loss 1 rank {[round(s['policy_loss'], 6) for s in one['actor']]}, largest relative "
          f"difference of any statistic 2 vs 1 rank {worst:.1e}")
    assert_stats_close(two["actor"], one["actor"], RTOL)
    assert_stats_close(two["critic"], one["critic"], RTOL)
    assert one["actor"][0]["policy_loss"] != one["actor"][-1]["policy_loss"]  # the weights did move
    assert ranks[2][1][stage]["state"] == {}  # only rank 0 gathers the weights
    for name, tensor in one["state"].items():
        torch.testing.assert_close(two["state"][name], tensor, rtol=RTOL, atol=1e-6)


def test_statistics_are_the_same_on_every_rank(ranks):
    for stage in STAGES:
        assert ranks[2][0][stage]["actor"] == ranks[2][1][stage]["actor"]


def test_one_deepspeed_rank_follows_the_local_actor(ranks):
    local, _ = train_roles(make_preset(2, 1))
    for stage in STAGES:
        assert_stats_close(ranks[1][0][stage]["actor"], local["actor"], 1e-3)
        assert_stats_close(ranks[1][0][stage]["critic"], local["critic"], 1e-3)
    assert local["state"].keys() == ranks[1][0][3]["state"].keys()


def test_zero3_offload_and_reload_between_fits(ranks):
    moves = ranks[2][0][3]["moves"]
    print(f"\nZeRO-3 offload/reload seconds (2 ranks, CPU): {[round(m, 4) for m in moves]}")
    assert len(moves) == 2 * FITS and all(m >= 0 for m in moves)
    for stage in (0, 1, 2):
        assert "needs ZeRO-3" in ranks[1][0][stage]["offload_error"]


@pytest.mark.parametrize("stage", [0, 3])
def test_reference_matches_local_log_probs(ranks, stage):
    """Each rank scores its half of the batch; under ZeRO-3 the ranks gather parameters together."""
    want = make_batch().old_log_probs
    for world in (1, 2):
        got = torch.cat([ranks[world][r][stage]["reference"] for r in range(world)])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_zero3_save_writes_a_loadable_model_from_rank_zero(ranks):
    from transformers import AutoModelForCausalLM

    transformers_logging.disable_progress_bar()
    saved = ranks["dirs"][2] / "saved2"
    model = AutoModelForCausalLM.from_pretrained(saved, local_files_only=True)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, ranks[2][0][3]["state"][name])
    assert (saved / "tokenizer.json").exists()
    assert json.loads((saved / "config.json").read_text())["model_type"] == "llama"


def test_gradient_checkpointing_recomputes_without_changing_the_updates():
    plain = make_preset(stage=0, world=1)
    checkpointed = plain.model_copy(update={"deepspeed": plain.deepspeed.model_copy(
        update={"gradient_checkpointing": True})})
    expected, _ = train_roles(plain)
    got, actor = train_roles(checkpointed)
    model = actor.actor.model  # transformers renamed the flag in 5.24
    assert getattr(model, "is_activation_checkpointing", None) or getattr(model, "is_gradient_checkpointing")
    assert not actor.actor.training
    for role in ("actor", "critic"):
        for want, have in zip(expected[role], got[role]):
            assert have == pytest.approx(want, rel=1e-5, abs=1e-7), role
