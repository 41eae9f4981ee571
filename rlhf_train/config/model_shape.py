"""How big a model is, read without torch: from the built-in spec, an HF `config.json`, a GGUF
header, or `[model].size_hint_b`.

    params (Llama-style) = V·H·(1 if tied else 2) + L·(H·(n_q + 2·n_kv)·d + n_q·d·H + 3·H·I + 2·H) + H

with V vocab, H hidden, L layers, I intermediate, n_q / n_kv attention / KV heads, d head dim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlhf_train.config.schema import Preset


@dataclass(frozen=True)
class ModelShape:
    params: int
    source: str
    layers: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    max_positions: int = 0

    @property
    def has_architecture(self) -> bool:
        return self.layers > 0 and self.kv_heads > 0 and self.head_dim > 0

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """K and V for every layer: 2 · L · n_kv · d · bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def shape_from_hf_config(cfg: dict, source: str) -> ModelShape:
    """Parameter count and KV geometry of a Llama-style decoder from its HF config dict."""
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    layers = int(cfg["num_hidden_layers"])
    inter = int(cfg["intermediate_size"])
    vocab = int(cfg["vocab_size"])
    tied = bool(cfg.get("tie_word_embeddings", False))
    per_layer = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden + 3 * hidden * inter + 2 * hidden
    params = vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden
    return ModelShape(params=params, source=source, layers=layers, kv_heads=kv_heads, head_dim=head_dim,
                      max_positions=int(cfg.get("max_position_embeddings") or 0))


def _shape_from_gguf(path: Path) -> ModelShape:
    from gguf import GGUFReader  # numpy-only; read lazily because few presets use GGUF

    reader = GGUFReader(str(path))
    params = sum(int(t.n_elements) for t in reader.tensors)
    arch_field = reader.fields.get("general.architecture")
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode() if arch_field else ""

    def field_int(name: str) -> int:
        f = reader.fields.get(f"{arch}.{name}")
        return int(f.parts[f.data[0]][0]) if f else 0

    heads = field_int("attention.head_count")
    hidden = field_int("embedding_length")
    return ModelShape(params=params, source=f"GGUF header of {path.name}", layers=field_int("block_count"),
                      kv_heads=field_int("attention.head_count_kv") or heads,
                      head_dim=hidden // heads if heads else 0, max_positions=field_int("context_length"))


def resolve_model_file(spec: str) -> Path | None:
    """The local file or directory a model spec names, or None for built-ins and missing paths."""
    if spec.startswith("builtin:"):
        return None
    from rlhf_train.models.loading import ModelLoadError, resolve_model_spec

    try:
        return resolve_model_spec(spec).path
    except ModelLoadError:
        return None


def model_shape(spec: str, size_hint_b: float = 0.0) -> ModelShape | None:
    """The shape of the model `spec` names, or None when it cannot be known here.

    `size_hint_b` wins when set: it is how a user describes a model that lives on the cluster.
    """
    if size_hint_b > 0:
        return ModelShape(params=round(size_hint_b * 1e9), source="[model].size_hint_b")
    if spec.startswith("builtin:"):
        from rlhf_train.models.tiny_spec import builtin_config

        cfg = builtin_config(spec)
        return shape_from_hf_config(cfg, f"{spec} (built in)") if cfg else None
    path = resolve_model_file(spec)
    if path is None:
        return None
    try:  # a config or header that cannot be read leaves the shape unknown here; loading the model says why
        if path.is_dir() and (path / "config.json").is_file():
            return shape_from_hf_config(json.loads((path / "config.json").read_text()), f"{path}/config.json")
        if path.is_file() and path.suffix == ".gguf":
            return _shape_from_gguf(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, ZeroDivisionError):
        return None
    return None


def actor_shape(preset: Preset) -> ModelShape | None:
    return model_shape(preset.model.actor, preset.model.size_hint_b)
