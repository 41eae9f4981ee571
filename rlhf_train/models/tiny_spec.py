"""The shape and vocabulary of ``builtin:tiny`` as plain data, importable without torch, so that
``rlhf-train check`` can size the built-in model; ``rlhf_train.models.tiny`` builds it from this."""

from __future__ import annotations

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)

#: The fixed vocabulary, in id order: specials (ids 0-3), digits, operators, chat-template roles and
#: the words the built-in tasks use. Appending is backward compatible; reordering is not.
TINY_VOCAB: tuple[str, ...] = SPECIAL_TOKENS + (
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "+", "-", "*", "=", ":",
    "system", "user", "assistant",
    "copy", "reverse", "add",
)

#: One turn per message, ``role : content <eos>``; the generation prompt is ``assistant :``.
#: Example: ``[{"role": "user", "content": "3 + 5 ="}]`` with ``add_generation_prompt=True`` renders
#: ``"<bos>user : 3 + 5 = <eos> assistant :"``.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }} : {{ message['content'] }} {{ eos_token }} "
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)

#: Shape of ``builtin:tiny`` (about 0.3 M parameters). head_dim must stay in vLLM's CPU set
#: {32, 64, 80, ...}; 16 fails there at the first generate.
TINY_CONFIG_DEFAULTS: dict = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    initializer_range=0.02,
    tie_word_embeddings=False,
)


def builtin_config(spec: str) -> dict | None:
    """The HF config dict (as ``config.json`` would hold it) of a ``builtin:`` model, or None."""
    if spec != "builtin:tiny":
        return None
    return {**TINY_CONFIG_DEFAULTS, "vocab_size": len(TINY_VOCAB)}
