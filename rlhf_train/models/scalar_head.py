"""A transformer backbone plus one scalar head — the shape shared by the critic and the reward model.

Subclasses name their head (`HEAD`: the checkpoint key prefix and attribute, `value_head` or
`score`), the role they load as, and how they read the hidden states.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rlhf_train.models.actor import position_ids_from_mask
from rlhf_train.models.heads import find_head_weights, head_from_weights, new_head, save_head


def base_model(model: nn.Module) -> nn.Module:
    """The base transformer of ``model``: ``model.get_decoder()`` for a causal LM, ``model`` itself otherwise."""
    if hasattr(model, "lm_head") and hasattr(model, "get_decoder"):
        return model.get_decoder()
    return model


class ScalarHeadModel(nn.Module):
    """``Cls(backbone, head=None, seed=0)``: ``backbone`` is a base transformer returning
    ``last_hidden_state`` (a causal LM is accepted and reduced to its base). Without ``head`` a fresh
    ``Linear(hidden, 1)`` is created from ``seed`` (see ``heads.new_head``) and stored as ``self.<HEAD>``."""

    HEAD: str = ""
    ROLE: str = ""
    FALLBACK_HEADS: tuple[str, ...] = ()
    """Heads read when the checkpoint has no `HEAD` (the critic takes a reward model's `score`)."""

    def __init__(self, backbone: nn.Module, head: nn.Linear | None = None, *, seed: int = 0):
        super().__init__()
        self.backbone = base_model(backbone)
        hidden = self.backbone.config.hidden_size
        dtype = next(self.backbone.parameters()).dtype
        setattr(self, self.HEAD, head if head is not None else new_head(hidden, seed=seed, dtype=dtype))
        self.ring = None

    def pack_over(self, ring) -> None:
        """Run packed from now on, over ``ring`` (as ``Actor.pack_over``)."""
        from rlhf_train.attention.hf import use_ring_attention

        use_ring_attention(self.backbone)
        self.ring = ring

    @property
    def head(self) -> nn.Linear:
        return getattr(self, self.HEAD)

    @property
    def config(self):
        """The backbone's config."""
        return self.backbone.config

    def hidden_states(self, sequences: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=sequences, attention_mask=attention_mask,
                             position_ids=position_ids_from_mask(attention_mask), use_cache=False).last_hidden_state

    def save_pretrained(self, directory: str | Path, tokenizer=None) -> Path:
        """Write the backbone (``save_pretrained``), ``<HEAD>.safetensors`` and, when given, the
        tokenizer to ``directory``; with the tokenizer, :meth:`from_spec` on it restores an identical model."""
        path = Path(directory)
        self.backbone.save_pretrained(path)
        save_head(self.head, path, self.HEAD)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return path

    @classmethod
    def from_spec(cls, spec: str, *, dtype: str = "float32", seed: int = 0):
        """Load ``spec`` (any form of ``rlhf_train.models.loading``); returns ``(model, tokenizer)``.

        The head is read from the checkpoint when it holds ``<HEAD>.weight`` (or, failing that, a
        ``FALLBACK_HEADS`` entry's weight; our
        :meth:`save_pretrained`, an OpenRLHF critic/reward model, or a Hugging Face
        ``*ForSequenceClassification`` with one label for ``score``); otherwise it is freshly
        initialised from ``seed``.
        """
        from rlhf_train.models.loading import load_model_and_tokenizer, resolve_model_spec

        backbone, tokenizer = load_model_and_tokenizer(spec, dtype=dtype, seed=seed, for_role=cls.ROLE)
        source = resolve_model_spec(spec)
        directory = source.directory if source.kind == "directory" else None
        head = None
        for name in (cls.HEAD, *cls.FALLBACK_HEADS):
            stored = find_head_weights(directory, name)
            if stored is not None:
                head = head_from_weights(stored, backbone.config.hidden_size,
                                         dtype=next(backbone.parameters()).dtype, name=name)
                break
        return cls(backbone, head, seed=seed), tokenizer
