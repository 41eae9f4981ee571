"""The rollout-engine interface every generation backend implements.

An engine turns prompt token ids into sampled responses. Samples of one prompt come out
contiguous: for prompts p0, p1 and n = 2 the order is p0, p0, p1, p1 (the group layout the
advantage estimators rely on). Between phases the trainer may put an engine to sleep and wake it;
new actor weights reach it after every update through the run's weight sync (`Roles.weight_sync`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    n: int
    max_new_tokens: int
    temperature: float
    top_p: float = 1.0
    top_k: int = -1
    seed: int = 0


@dataclass
class Generation:
    """Sampled responses, one entry per sample (prompt repeated n times, contiguous).

    `response_ids` hold the generated tokens up to and including the first eos (no padding);
    `truncated[i]` is true when sample i hit max_new_tokens without an eos.
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.response_ids)

    @property
    def response_tokens(self) -> int:
        return sum(len(r) for r in self.response_ids)


class RolloutEngine(Protocol):
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation: ...

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...
