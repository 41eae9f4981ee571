"""Models: the built-in tiny model/tokenizer, spec loading, and the actor/critic/reward wrappers."""

from __future__ import annotations

import json

import pytest
import torch

from rlhf_train.models.actor import Actor, position_ids_from_mask, token_log_probs
from rlhf_train.models.critic import Critic
from rlhf_train.models.heads import new_head
from rlhf_train.models.loading import ModelLoadError, load_model_and_tokenizer, load_tokenizer, resolve_model_spec
from rlhf_train.models.reward_model import RewardModel, last_token_index
from rlhf_train.models.tiny import (
    TINY_CHAT_TEMPLATE,
    TINY_VOCAB,
    build_tiny_model,
    build_tiny_tokenizer,
    save_tiny,
    tiny_config,
)

PAD = TINY_VOCAB.index("<pad>")


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"), seed=0)


def pad_rows(rows: list[tuple[list[int], list[int]]], left: list[int], right: list[int]):
    """Build (sequences, mask, num_actions) from (prompt, response) id lists with extra pads.

    Each prompt is left-padded to a common width plus ``left[i]`` pads; each response is
    right-padded to a common width plus ``right[i]`` pads (responses end where the widest ends).
    """
    prompt_w = max(len(p) + l for (p, _), l in zip(rows, left))
    resp_w = max(len(r) + rr for (_, r), rr in zip(rows, right))
    seqs, masks = [], []
    for (p, r), _l, _r in zip(rows, left, right):
        lp, rp = prompt_w - len(p), resp_w - len(r)
        seqs.append([PAD] * lp + p + r + [PAD] * rp)
        masks.append([0] * lp + [1] * (len(p) + len(r)) + [0] * rp)
    return torch.tensor(seqs), torch.tensor(masks), resp_w


# ---- tiny model and tokenizer --------------------------------------------------------------------


def test_tiny_config_fits_vllm_cpu():
    cfg = tiny_config()
    assert cfg.head_dim == 32 and cfg.hidden_size == cfg.num_attention_heads * cfg.head_dim
    assert cfg.num_key_value_heads == 2 and cfg.tie_word_embeddings is False
    assert cfg.vocab_size == len(TINY_VOCAB)
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    with pytest.raises(ValueError, match="hidden_sizes"):
        tiny_config(hidden_sizes=3)


def test_tiny_model_is_deterministic_per_seed_and_keeps_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = build_tiny_model(seed=7), build_tiny_model(seed=7), build_tiny_model(seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tokenizer_encodes_words_with_bos_and_decodes_with_spaces(tok):
    ids = tok("3 + 5 =")["input_ids"]
    assert ids == [1] + [TINY_VOCAB.index(w) for w in ["3", "+", "5", "="]]
    assert tok.decode(ids, skip_special_tokens=True) == "3 + 5 ="
    assert tok.decode(ids) == "<bos> 3 + 5 ="
    assert tok("3 zebra")["input_ids"][-1] == TINY_VOCAB.index("<unk>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert len(tok) == len(TINY_VOCAB) and tok.padding_side == "left"


def test_tokenizer_chat_template(tok):
    messages = [{"role": "system", "content": "add"}, {"role": "user", "content": "3 + 5 ="}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<bos>system : add <eos> user : 3 + 5 = <eos> assistant :"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(1) == 1 and TINY_VOCAB.index("<unk>") not in ids


def test_tiny_save_load_roundtrip_identical(tiny_dir, model, tok):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(tiny_dir, local_files_only=True)
    loaded_tok = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    ids = torch.tensor([tok("7 + 2 = 9")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert loaded_tok("7 + 2 = 9")["input_ids"] == ids[0].tolist()
    assert loaded_tok.chat_template == TINY_CHAT_TEMPLATE
    assert json.loads((tiny_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


# ---- loading -------------------------------------------------------------------------------------


def test_load_builtin_tiny_roles_and_dtype():
    actor_model, tok = load_model_and_tokenizer("builtin:tiny", seed=3)
    assert torch.equal(actor_model.lm_head.weight, build_tiny_model(seed=3).lm_head.weight)
    assert tok.pad_token == "<pad>" and not actor_model.training
    critic_backbone, _ = load_model_and_tokenizer("builtin:tiny", seed=3, for_role="critic")
    assert not hasattr(critic_backbone, "lm_head") and critic_backbone.config.hidden_size == 128
    bf16, _ = load_model_and_tokenizer("builtin:tiny", dtype="bf16")
    assert bf16.lm_head.weight.dtype == torch.bfloat16


def test_load_directory_matches_built_model(tiny_dir, model):
    loaded, tok = load_model_and_tokenizer(str(tiny_dir))
    ids = torch.tensor([tok("1 + 1 =")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert resolve_model_spec(str(tiny_dir)).kind == "directory"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("", "model spec is empty"),
        ("builtin:huge", "unknown built-in model 'builtin:huge'"),
        ("package:no_such_pkg_zz", "package 'no_such_pkg_zz' (model spec 'package:no_such_pkg_zz') is not installed"),
        ("org/some-model", "hub ids are not downloaded"),
        ("runs/a\0b", "contains a NUL character; no file can have that name"),
    ],
)
def test_resolve_errors_name_the_spec(spec, needle):
    with pytest.raises(ModelLoadError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve_model_spec(spec)


def test_resolve_missing_path_and_bad_files_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match=f"model path '{missing}' does not exist"):
        resolve_model_spec(str(missing))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ModelLoadError, match="empty_dir' has no config.json"):
        resolve_model_spec(str(tmp_path / "empty_dir"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="weights.bin' is not a .gguf file"):
        resolve_model_spec(str(tmp_path / "weights.bin"))


def test_load_corrupt_files_raise_model_load_error(tmp_path, tiny_dir):
    bad_gguf = tmp_path / "broken.gguf"
    bad_gguf.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match=f"cannot load GGUF file '{bad_gguf}'"):
        load_model_and_tokenizer(str(bad_gguf))
    broken = tmp_path / "broken_dir"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match=f"cannot load model weights from '{broken}'"):
        load_model_and_tokenizer(str(broken))
    with pytest.raises(ModelLoadError, match="dtype 'float8'"):
        load_model_and_tokenizer("builtin:tiny", dtype="float8")


# ---- actor ---------------------------------------------------------------------------------------


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[1, 1, 0, 1, 2, 1], [0, 1, 2, 3, 4, 5]]


def test_actor_log_probs_equal_hand_computation(model, tok):
    seq = torch.tensor([tok("3 + 5 = 8")["input_ids"] + [2]])  # bos 3 + 5 = 8 eos
    num_actions = 2
    got, logits = Actor(model)(seq, torch.ones_like(seq), num_actions, return_logits=True)
    with torch.no_grad():
        raw = model(seq).logits[0]
    expected = [torch.log_softmax(raw[t - 1], -1)[seq[0, t]] for t in range(seq.shape[1] - num_actions, seq.shape[1])]
    assert got.shape == (1, 2) and logits.shape == (1, 2, len(TINY_VOCAB))
    torch.testing.assert_close(got[0], torch.stack(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(logits[0], raw[-3:-1], rtol=0, atol=1e-6)


def test_actor_temperature_divides_logits(model, tok):
    seq = torch.tensor([tok("4 + 4 = 8")["input_ids"]])
    got = Actor(model)(seq, torch.ones_like(seq), 1, temperature=0.5)
    with torch.no_grad():
        raw = model(seq).logits[0, -2]
    torch.testing.assert_close(got[0, 0], torch.log_softmax(raw / 0.5, -1)[seq[0, -1]], rtol=0, atol=1e-5)


def test_actor_padding_invariance(model, tok):
    rows = [(tok("3 + 5 =")["input_ids"], [TINY_VOCAB.index("8"), 2]), (tok("1 + 0 =")["input_ids"], [TINY_VOCAB.index("1"), 4, 5])]
    actor = Actor(model)
    a_seq, a_mask, a_n = pad_rows(rows, left=[0, 0], right=[0, 0])
    b_seq, b_mask, b_n = pad_rows(rows, left=[3, 1], right=[2, 0])
    la, lb = actor(a_seq, a_mask, a_n), actor(b_seq, b_mask, b_n)
    assert torch.isfinite(la).all() and torch.isfinite(lb).all()
    for i, (_, resp) in enumerate(rows):
        torch.testing.assert_close(la[i, : len(resp)], lb[i, : len(resp)], rtol=0, atol=1e-5)
        alone = torch.tensor([rows[i][0] + resp])
        torch.testing.assert_close(actor(alone, torch.ones_like(alone), len(resp))[0], lb[i, : len(resp)], rtol=0, atol=1e-5)


def test_actor_rejects_bad_num_actions(model):
    seq = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"num_actions must be in \[1, 3\]"):
        Actor(model)(seq, torch.ones_like(seq), 4)


def test_token_log_probs_matches_log_softmax():
    logits = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(1))
    expected = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(token_log_probs(logits, tokens), expected)


def test_actor_gradients_flow(model, tok):
    m = build_tiny_model(seed=1)
    seq = torch.tensor([tok("2 + 2 = 4")["input_ids"]])
    Actor(m)(seq, torch.ones_like(seq), 1).sum().backward()
    assert m.lm_head.weight.grad is not None and m.model.embed_tokens.weight.grad.abs().sum() > 0


# ---- critic --------------------------------------------------------------------------------------


def test_critic_values_align_with_actor_log_probs(model, tok):
    critic = Critic(model, seed=5)
    seq = torch.tensor([tok("3 + 5 = 8")["input_ids"] + [2]])
    values = critic(seq, torch.ones_like(seq), 2)
    with torch.no_grad():
        hidden = model.model(seq).last_hidden_state[0]
    expected = critic.value_head(hidden).squeeze(-1)[-3:-1]  # states before the two response tokens
    assert values.shape == (1, 2)
    torch.testing.assert_close(values[0], expected, rtol=0, atol=1e-6)


def test_critic_padding_invariance_and_fresh_head_is_seeded(model, tok):
    critic = Critic(model, seed=5)
    assert torch.equal(critic.value_head.weight, Critic(model, seed=5).value_head.weight)
    assert not torch.equal(critic.value_head.weight, Critic(model, seed=6).value_head.weight)
    rows = [(tok("2 + 3 =")["input_ids"], [TINY_VOCAB.index("5"), 2]), (tok("9 + 0 =")["input_ids"], [TINY_VOCAB.index("9")])]
    a = critic(*pad_rows(rows, left=[0, 0], right=[0, 0]))
    b = critic(*pad_rows(rows, left=[2, 4], right=[1, 3]))
    for i, (_, resp) in enumerate(rows):
        torch.testing.assert_close(a[i, : len(resp)], b[i, : len(resp)], rtol=0, atol=1e-5)


def test_critic_save_and_from_spec_roundtrip(tmp_path, tok):
    critic, critic_tok = Critic.from_spec("builtin:tiny", seed=2)
    assert critic_tok.eos_token == "<eos>"
    with torch.no_grad():
        critic.value_head.weight.add_(1.0)  # make the head differ from any fresh one
    critic.save_pretrained(tmp_path / "critic", tokenizer=critic_tok)
    again, _ = Critic.from_spec(str(tmp_path / "critic"), seed=99)
    seq = torch.tensor([tok("1 + 2 = 3")["input_ids"]])
    torch.testing.assert_close(again(seq, torch.ones_like(seq), 2), critic(seq, torch.ones_like(seq), 2), rtol=0, atol=0)


# ---- reward model --------------------------------------------------------------------------------


def test_last_token_index():
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]])
    assert last_token_index(mask).tolist() == [2, 3, 2]


def test_reward_read_at_last_real_token_under_padding(model, tok):
    rm = RewardModel(model, seed=4)
    rows = [(tok("3 + 5 =")["input_ids"], [TINY_VOCAB.index("8"), 2]), (tok("1 + 1 =")["input_ids"], [TINY_VOCAB.index("2")])]
    seqs, mask, _ = pad_rows(rows, left=[2, 0], right=[1, 3])
    rewards = rm(seqs, mask)
    assert rewards.shape == (2,)
    for i, (prompt, resp) in enumerate(rows):
        alone = torch.tensor([prompt + resp])
        with torch.no_grad():
            hidden = model.model(alone).last_hidden_state[0, -1]
        torch.testing.assert_close(rewards[i], rm.score(hidden)[0], rtol=0, atol=1e-5)


def test_reward_model_reads_sequence_classification_head(tmp_path, tok):
    from transformers import LlamaForSequenceClassification

    config = tiny_config()
    config.num_labels = 1
    with torch.random.fork_rng():
        torch.manual_seed(0)
        hf = LlamaForSequenceClassification(config).eval()
    with torch.no_grad():
        hf.score.weight.normal_()
    hf.save_pretrained(tmp_path / "rm")
    build_tiny_tokenizer().save_pretrained(tmp_path / "rm")
    rm, _ = RewardModel.from_spec(str(tmp_path / "rm"))
    seq = torch.tensor([tok("4 + 5 = 9")["input_ids"] + [2]])
    with torch.no_grad():
        expected = hf(seq).logits[0, 0]
    torch.testing.assert_close(rm(seq, torch.ones_like(seq))[0], expected, rtol=0, atol=1e-5)


def test_new_head_is_seeded_and_scaled():
    a, b = new_head(128, seed=1), new_head(128, seed=1)
    assert torch.equal(a.weight, b.weight) and a.weight.shape == (1, 128) and a.bias is None
    assert 0.03 < a.weight.std().item() < 0.15  # ~ 1/sqrt(129) = 0.088


def test_load_tokenizer_alone_equals_the_one_loaded_with_the_model(tiny_dir, tmp_path):
    for spec in ("builtin:tiny", str(tiny_dir)):
        alone = load_tokenizer(spec)
        _, with_model = load_model_and_tokenizer(spec)
        assert alone.get_vocab() == with_model.get_vocab()
        assert (alone.pad_token_id, alone.eos_token_id) == (with_model.pad_token_id, with_model.eos_token_id)
        assert alone("1 + 2 =")["input_ids"] == with_model("1 + 2 =")["input_ids"]
    (tmp_path / "no_tokenizer").mkdir()
    (tmp_path / "no_tokenizer" / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="cannot load a tokenizer from .*no_tokenizer'.*tokenizer.save_pretrained"):
        load_tokenizer(str(tmp_path / "no_tokenizer"))
