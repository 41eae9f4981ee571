"""The critic: a transformer backbone plus a linear value head, values aligned with the actor's log-probs.

For the layout of ``sequences`` / ``attention_mask`` / ``num_actions`` see ``rlhf_train.models.actor``.
The value of response token t is the value of the state *before* it, read from the hidden state at
column t-1 -- the column whose logits give the actor's log-prob of token t. So ``values[:, i]`` and
``Actor(...)[:, i]`` describe the same action, and the values come from hidden-state columns
``-num_actions-1 .. -2`` (as OpenRLHF).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rlhf_train.models.actor import position_ids_from_mask
from rlhf_train.models.heads import find_head_weights, head_from_weights, new_head, save_head

VALUE_HEAD = "value_head"


def base_model(model: nn.Module) -> nn.Module:
    """The base transformer of ``model``: ``model.get_decoder()`` for a causal LM, ``model`` itself otherwise."""
    if hasattr(model, "lm_head") and hasattr(model, "get_decoder"):
        return model.get_decoder()
    return model


class Critic(nn.Module):
    """``Critic(backbone, value_head=None, seed=0)``; ``backbone`` is a base transformer returning
    ``last_hidden_state`` (a causal LM is accepted and reduced to its base). Without ``value_head`` a
    fresh ``Linear(hidden, 1)`` is created from ``seed`` (see ``heads.new_head``)."""

    def __init__(self, backbone: nn.Module, value_head: nn.Linear | None = None, *, seed: int = 0):
        super().__init__()
        self.backbone = base_model(backbone)
        hidden = self.backbone.config.hidden_size
        dtype = next(self.backbone.parameters()).dtype
        self.value_head = value_head if value_head is not None else new_head(hidden, seed=seed, dtype=dtype)

    @property
    def config(self):
        """The backbone's config."""
        return self.backbone.config

    def forward(self, sequences: torch.Tensor, attention_mask: torch.Tensor, num_actions: int) -> torch.Tensor:
        """Values ``[B, num_actions]`` (float32): ``value_head(hidden[:, t-1])`` for each of the last
        ``num_actions`` columns t. Padding columns carry finite, meaningless values."""
        width = sequences.shape[1]
        if not 1 <= num_actions < width:
            raise ValueError(f"num_actions must be in [1, {width - 1}] for sequences of width {width}, got {num_actions}")
        hidden = self.backbone(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        ).last_hidden_state
        return self.value_head(hidden[:, -num_actions - 1 : -1]).squeeze(-1).float()

    def save_pretrained(self, directory: str | Path, tokenizer=None) -> Path:
        """Write the backbone (``save_pretrained``), ``value_head.safetensors`` and, when given, the
        tokenizer to ``directory``; with the tokenizer, :meth:`from_spec` on that directory restores
        an identical critic."""
        path = Path(directory)
        self.backbone.save_pretrained(path)
        save_head(self.value_head, path, VALUE_HEAD)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return path

    @classmethod
    def from_spec(cls, spec: str, *, dtype: str = "float32", seed: int = 0):
        """Load ``spec`` (any form of ``rlhf_train.models.loading``) as a critic; returns ``(critic, tokenizer)``.

        The value head is read from the checkpoint when it holds ``value_head.weight`` (a directory
        written by :meth:`save_pretrained`, or an OpenRLHF critic), otherwise freshly initialised from ``seed``.
        """
        from rlhf_train.models.loading import load_model_and_tokenizer, resolve_model_spec

        backbone, tokenizer = load_model_and_tokenizer(spec, dtype=dtype, seed=seed, for_role="critic")
        source = resolve_model_spec(spec)
        stored = find_head_weights(source.directory if source.kind == "directory" else None, VALUE_HEAD)
        head = None
        if stored is not None:
            head = head_from_weights(stored, backbone.config.hidden_size, dtype=next(backbone.parameters()).dtype, name=VALUE_HEAD)
        return cls(backbone, head, seed=seed), tokenizer
