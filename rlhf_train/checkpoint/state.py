"""What a checkpoint holds besides the models: the trainer's counters (`TrainerState`, as
`state/trainer.json`) and the random generators of a process (`rng_state` / `set_rng_state`).

Step `s` of a run consumes rollout batch `s` of `trainer.prompt_batches`, so the data-loader
position is the number of batches consumed; the episode is that number divided by the batches one
pass over the prompts gives.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

TRAINER_FILE = "trainer.json"


@dataclass(frozen=True)
class TrainerState:
    step: int
    """The last step completed (the resumed run starts at step + 1)."""
    batches: int
    """Rollout batches consumed from the data loader."""
    episode: int
    """Passes over the prompt set begun (0-based) at the next batch."""
    kl_coef: float
    """The KL controller's β after the step."""
    seq: int
    """The `seq` of the last event written before the checkpoint."""
    skipped: int
    """Batches skipped so far for non-finite values ([checkpoint].nonfinite_skips)."""
    reward_normalizer: dict | None = None
    """The running reward statistics of `[reward].normalize` (`RunningNormalizer.state`); None when off."""

    def save(self, directory: Path) -> None:
        (directory / TRAINER_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> "TrainerState":
        return cls(**json.loads((directory / TRAINER_FILE).read_text()))


def rng_state() -> dict:
    """This process's generators: Python's `random`, NumPy's global one, torch's CPU one and, where
    there is CUDA, every device's."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng(path: Path) -> None:
    torch.save(rng_state(), path)


def load_rng(path: Path) -> None:
    set_rng_state(torch.load(path, weights_only=False))
