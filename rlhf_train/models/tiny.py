"""The built-in model ``builtin:tiny``: a small Llama and its word-level tokenizer, built in code.

Nothing is downloaded. The model is a ``LlamaForCausalLM`` whose shape vLLM's CPU backend accepts
(head_dim 32, grouped-query attention, untied embeddings), and the tokenizer is a
``PreTrainedTokenizerFast`` over a fixed word-level vocabulary split on whitespace. The vocabulary
covers every token the built-in tasks (``rlhf_train.rewards.builtin``) use, so prompts and answers
never map to ``<unk>``.

Contracts:

* ``build_tiny_model(seed)`` is deterministic: the same seed gives bit-identical weights, and the
  caller's global torch RNG state is left untouched.
* ``save_tiny(directory, seed)`` writes a directory that plain ``transformers``
  (``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained(dir, local_files_only=True)``) and vLLM
  load; loading it back gives identical logits.
* Text conventions: words are separated by single spaces; ``tokenizer(text)`` prepends ``<bos>``
  (``add_special_tokens=True``); ``decode`` joins words with single spaces. The chat template owns
  its special tokens (it starts with ``<bos>``), so text rendered by it is tokenized with
  ``add_special_tokens=False`` (the Hugging Face convention).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rlhf_train.models.tiny_spec import (  # noqa: F401 - re-exported: the spec lives torch-free for `check`
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    TINY_CHAT_TEMPLATE,
    TINY_CONFIG_DEFAULTS,
    TINY_VOCAB,
    UNK,
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Return the word-level tokenizer of ``builtin:tiny`` (pad/bos/eos/unk = ids 0/1/2/3).

    Padding side is left (prompts are left-padded for generation); unknown words map to ``<unk>``.
    ``apply_chat_template`` works with :data:`TINY_CHAT_TEMPLATE`.
    """
    vocab = {token: i for i, token in enumerate(TINY_VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=TINY_CONFIG_DEFAULTS["max_position_embeddings"],
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_config(**overrides) -> LlamaConfig:
    """Return the ``LlamaConfig`` of ``builtin:tiny``; ``overrides`` replace entries of
    :data:`TINY_CONFIG_DEFAULTS` (e.g. ``num_hidden_layers=4``). Token ids follow :data:`TINY_VOCAB`."""
    unknown = set(overrides) - set(TINY_CONFIG_DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown tiny-model setting(s) {sorted(unknown)}; allowed: {sorted(TINY_CONFIG_DEFAULTS)}"
        )
    settings = {**TINY_CONFIG_DEFAULTS, **overrides}
    return LlamaConfig(
        vocab_size=len(TINY_VOCAB),
        pad_token_id=TINY_VOCAB.index(PAD),
        bos_token_id=TINY_VOCAB.index(BOS),
        eos_token_id=TINY_VOCAB.index(EOS),
        **settings,
    )


def build_tiny_model(seed: int = 0, *, dtype: torch.dtype = torch.float32, **overrides) -> LlamaForCausalLM:
    """Return a freshly initialised ``builtin:tiny`` model (eval mode) in ``dtype``.

    Weights come from transformers' own initialisation (normal, std ``initializer_range``) under
    ``torch.manual_seed(seed)`` inside a forked RNG, so the result depends on ``seed`` only and the
    caller's RNG state is unchanged. ``overrides`` are passed to :func:`tiny_config`.
    """
    config = tiny_config(**overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model.to(dtype).eval()


def save_tiny(directory: str | Path, seed: int = 0, **overrides) -> Path:
    """Write model + tokenizer of ``builtin:tiny`` (seeded) to ``directory`` and return it as a Path.

    The directory holds ``config.json``, ``model.safetensors``, ``generation_config.json`` and the
    tokenizer files (chat template included): a normal Hugging Face model directory.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    build_tiny_model(seed, **overrides).save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    return path
