"""The reward model: a transformer backbone plus a linear score head, read at each row's last real token.

Input layout as in ``rlhf_train.models.actor`` (left-padded prompt ++ right-padded response). The
reward of a row is ``score(hidden[last])`` where ``last`` is the column of the row's last token with
``attention_mask == 1`` -- the eos of the response when it has one -- so padding on either side does
not change it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rlhf_train.models.actor import position_ids_from_mask
from rlhf_train.models.critic import base_model
from rlhf_train.models.heads import find_head_weights, head_from_weights, new_head, save_head

SCORE_HEAD = "score"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Column of the last 1 in each row of ``attention_mask`` [B, T] -> [B] (long).
    ``[[0, 1, 1, 0]]`` -> ``[2]``. A row of zeros gives T-1."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.long().flip(dims=[1]).argmax(dim=1)


class RewardModel(nn.Module):
    """``RewardModel(backbone, score_head=None, seed=0)``; like :class:`~rlhf_train.models.critic.Critic`
    the backbone is a base transformer (a causal LM is reduced to its base), and a missing head is
    created fresh from ``seed``."""

    def __init__(self, backbone: nn.Module, score_head: nn.Linear | None = None, *, seed: int = 0):
        super().__init__()
        self.backbone = base_model(backbone)
        hidden = self.backbone.config.hidden_size
        dtype = next(self.backbone.parameters()).dtype
        self.score = score_head if score_head is not None else new_head(hidden, seed=seed, dtype=dtype)

    @property
    def config(self):
        """The backbone's config."""
        return self.backbone.config

    def forward(self, sequences: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards ``[B]`` (float32): the score head at each row's last real token."""
        hidden = self.backbone(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        ).last_hidden_state
        last = last_token_index(attention_mask)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.score(picked).squeeze(-1).float()

    def save_pretrained(self, directory: str | Path, tokenizer=None) -> Path:
        """Write the backbone, ``score.safetensors`` and, when given, the tokenizer to ``directory``
        (with the tokenizer, reloadable by :meth:`from_spec`)."""
        path = Path(directory)
        self.backbone.save_pretrained(path)
        save_head(self.score, path, SCORE_HEAD)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return path

    @classmethod
    def from_spec(cls, spec: str, *, dtype: str = "float32", seed: int = 0):
        """Load ``spec`` as a reward model; returns ``(reward_model, tokenizer)``.

        The score head is read from the checkpoint when it holds ``score.weight`` (our
        :meth:`save_pretrained`, an OpenRLHF reward model or a Hugging Face ``*ForSequenceClassification``
        with one label); otherwise it is freshly initialised from ``seed`` (an untrained reward model:
        useful for tests and plumbing, not for learning).
        """
        from rlhf_train.models.loading import load_model_and_tokenizer, resolve_model_spec

        backbone, tokenizer = load_model_and_tokenizer(spec, dtype=dtype, seed=seed, for_role="reward")
        source = resolve_model_spec(spec)
        stored = find_head_weights(source.directory if source.kind == "directory" else None, SCORE_HEAD)
        head = None
        if stored is not None:
            head = head_from_weights(stored, backbone.config.hidden_size, dtype=next(backbone.parameters()).dtype, name=SCORE_HEAD)
        return cls(backbone, head, seed=seed), tokenizer
