"""The tiny model under packing and ring attention: per-token log-probs (actor) and values (critic)
of a ring of 2 gloo processes equal those of a ring of 1 (packing alone) and of the padded,
unpacked forward pass, for batches of rollout_batch_size × n_samples_per_prompt samples with
n ∈ {1, 2, 4}; the ring's parameter gradients summed over its ranks equal the single-process
gradient (what DeepSpeed's all-reduce, scaled by the ring size, hands the optimizer)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlhf_train.attention.group import join_rings, no_ring
from rlhf_train.experience import batch_from_generation
from rlhf_train.models.actor import Actor
from rlhf_train.models.critic import Critic
from rlhf_train.models.tiny import build_tiny_model
from rlhf_train.rollout.base import Generation

PROMPTS = ([1, 4, 10, 6, 14], [1, 7, 12, 8, 14, 5, 9], [1, 5, 14])  # rollout_batch_size = 3


def rollout(n: int) -> Generation:
    """3 prompts × n samples, responses of different lengths (some end in eos, one is a single token)."""
    prompts, responses = [], []
    for p, prompt in enumerate(PROMPTS):
        for s in range(n):
            length = 1 + (3 * p + 2 * s) % 6
            responses.append([4 + (7 * p + 3 * s + t) % 10 for t in range(length - 1)] + [2])
            prompts.append(prompt)
    return Generation(prompt_ids=prompts, response_ids=responses, truncated=[False] * len(responses))


def models():
    actor = Actor(build_tiny_model(seed=3, dtype=torch.float64))
    critic = Critic(build_tiny_model(seed=4, dtype=torch.float64), seed=5)
    return actor, critic


def outputs(actor, critic, batch):
    """(log-probs, values, their gradients) of the batch; the loss is a fixed weighting of both."""
    actor.zero_grad(), critic.zero_grad()
    log_probs = actor(batch.sequences, batch.attention_mask, batch.num_actions)
    values = critic(batch.sequences, batch.attention_mask, batch.num_actions)
    mask = batch.action_mask.double()
    weights = torch.linspace(-1, 1, mask.numel(), dtype=torch.float64).view(mask.shape)
    ((log_probs.double() * mask * weights).sum() + (values.double() * mask * weights.flip(0)).sum()).backward()
    grads = torch.cat([p.grad.flatten() for p in list(actor.parameters()) + list(critic.parameters())])
    return log_probs.detach() * mask, values.detach() * mask, grads


def _ring_of_two(rank: int, store: str, n_values: tuple[int, ...]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        ring = join_rings(rank, 2, 2, backend="torch")
        for n in n_values:
            batch = batch_from_generation(rollout(n), pad_id=0)
            assert batch.size == len(PROMPTS) * n

            padded = outputs(*models(), batch)
            single = models()
            for model in single:
                model.pack_over(no_ring())
            alone = outputs(*single, batch)
            ringed = models()
            for model in ringed:
                model.pack_over(ring)
            log_probs, values, grads = outputs(*ringed, batch)

            torch.testing.assert_close(alone[0], padded[0], atol=1e-10, rtol=0)
            torch.testing.assert_close(alone[1], padded[1], atol=1e-10, rtol=0)
            torch.testing.assert_close(log_probs, alone[0], atol=1e-10, rtol=0)
            torch.testing.assert_close(values, alone[1], atol=1e-10, rtol=0)
            summed = grads.clone()
            dist.all_reduce(summed)
            torch.testing.assert_close(summed, alone[2], atol=1e-10, rtol=0)
            torch.testing.assert_close(alone[2], padded[2], atol=1e-10, rtol=0)
    finally:
        dist.destroy_process_group()


def test_ring_of_two_equals_ring_of_one_for_1_2_4_samples_per_prompt(tmp_path):
    mp.spawn(_ring_of_two, args=(str(tmp_path / "store"), (1, 2, 4)), nprocs=2, join=True)


def test_packed_log_probs_with_temperature_and_logits_match_the_padded_pass():
    batch = batch_from_generation(rollout(2), pad_id=0)
    actor = Actor(build_tiny_model(seed=3, dtype=torch.float64))
    expected_lp, expected_logits = actor(batch.sequences, batch.attention_mask, batch.num_actions,
                                         return_logits=True, temperature=0.7)
    actor.pack_over(no_ring())
    log_probs, logits = actor(batch.sequences, batch.attention_mask, batch.num_actions, return_logits=True,
                              temperature=0.7)
    mask = batch.action_mask.bool()
    torch.testing.assert_close(log_probs[mask], expected_lp[mask], atol=1e-10, rtol=0)
    torch.testing.assert_close(logits[mask], expected_logits[mask], atol=1e-10, rtol=0)
