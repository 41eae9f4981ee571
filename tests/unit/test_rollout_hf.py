"""The HF rollout engine and the experience layout, on the built-in tiny model."""

from __future__ import annotations

import pytest
import torch

from rlhf_train.errors import RunError
from rlhf_train.experience import batch_from_generation
from rlhf_train.models.actor import Actor
from rlhf_train.models.tiny import build_tiny_model, build_tiny_tokenizer
from rlhf_train.rollout.base import Generation, SamplingParams
from rlhf_train.rollout.hf_engine import HFEngine, cut_at_eos, left_pad


def engine(max_batch_samples: int = 64) -> tuple[HFEngine, object]:
    tok = build_tiny_tokenizer()
    model = build_tiny_model(seed=3)
    return HFEngine(model, pad_id=tok.pad_token_id, eos_ids={tok.eos_token_id}, max_batch_samples=max_batch_samples,
                    shared=True), tok


def test_left_pad_and_cut_at_eos():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert cut_at_eos([4, 2, 9, 2], {2}) == ([4, 2], False)
    assert cut_at_eos([4, 5], {2}) == ([4, 5], True)


def test_samples_of_a_prompt_are_contiguous_and_seeded():
    eng, tok = engine()
    prompts = [tok("3 + 5 =")["input_ids"], tok("copy 1 2 :")["input_ids"]]
    params = SamplingParams(n=3, max_new_tokens=5, temperature=1.0, seed=11)
    out = eng.generate(prompts, params)
    assert out.prompt_ids == [prompts[0]] * 3 + [prompts[1]] * 3
    assert len(out) == 6
    for response, truncated in zip(out.response_ids, out.truncated):
        assert 1 <= len(response) <= 5
        assert truncated == (tok.eos_token_id not in response)
        assert tok.eos_token_id not in response[:-1], "nothing after the first eos"
    assert eng.generate(prompts, params).response_ids == out.response_ids, "same seed, same samples"
    before = torch.random.get_rng_state()
    eng.generate(prompts, SamplingParams(n=3, max_new_tokens=5, temperature=1.0, seed=12))
    assert torch.equal(before, torch.random.get_rng_state()), "the caller's RNG is left alone"


def test_chunking_does_not_change_the_layout():
    eng, tok = engine(max_batch_samples=2)
    prompts = [tok(f"{a} + 1 =")["input_ids"] for a in range(4)]
    out = eng.generate(prompts, SamplingParams(n=2, max_new_tokens=3, temperature=0.0))
    assert out.prompt_ids == [p for p in prompts for _ in range(2)]
    assert out.response_ids[0] == out.response_ids[1], "greedy samples of one prompt are equal"


def test_experience_layout_and_log_probs_match_the_model():
    tok = build_tiny_tokenizer()
    model = build_tiny_model(seed=3)
    gen = Generation(prompt_ids=[[1, 5, 6], [1, 7]], response_ids=[[8, 2], [9, 10, 11]], truncated=[False, True])
    batch = batch_from_generation(gen, pad_id=tok.pad_token_id)
    assert batch.sequences.tolist() == [[1, 5, 6, 8, 2, 0], [0, 1, 7, 9, 10, 11]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]]
    assert batch.action_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    lp = Actor(model)(batch.sequences, batch.attention_mask, batch.num_actions)
    with torch.no_grad():
        alone = torch.log_softmax(model(torch.tensor([[1, 7, 9, 10]])).logits[0, -1], -1)[11]
    assert torch.allclose(lp[1, 2], alone, atol=1e-5)
    part = batch.select(slice(1, 2))
    assert part.size == 1 and part.sequences.tolist() == [[0, 1, 7, 9, 10, 11]]


def test_sleep_releases_the_weights_and_wake_plus_load_restores_generation():
    tok = build_tiny_tokenizer()
    eng = HFEngine(build_tiny_model(seed=3), pad_id=tok.pad_token_id, eos_ids={tok.eos_token_id})
    weights = {k: v.clone() for k, v in eng.model.state_dict().items()}
    prompts = [tok("3 + 5 =")["input_ids"]]
    params = SamplingParams(n=4, max_new_tokens=6, temperature=1.0, seed=5)
    before = eng.generate(prompts, params)

    eng.sleep()
    assert all(p.untyped_storage().nbytes() == 0 for p in eng.model.parameters())
    with pytest.raises(RunError, match="asleep"):
        eng.generate(prompts, params)
    with pytest.raises(RunError, match="wake_up"):
        eng.load_weights(weights)
    eng.wake_up()
    assert [p.shape for p in eng.model.parameters()] == [w.shape for w in build_tiny_model(seed=3).parameters()]
    with pytest.raises(RunError, match="load_weights"):
        eng.generate(prompts, params)  # storage is back, its values are not
    eng.load_weights(weights)
    assert eng.generate(prompts, params).response_ids == before.response_ids


def test_an_engine_sharing_the_actor_module_cannot_sleep():
    eng, _ = engine()
    with pytest.raises(RunError, match="cannot sleep"):
        eng.sleep()
