"""Where a rollout's rewards come from, behind one call: `scores(prompts, responses, labels) -> [N]`.

Kinds (`[reward].kind`): `builtin` — the built-in task's verifier; `function` — a Python function
`path.py:name`; `model` — a reward model (sequence classifier) scoring prompt + response.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlhf_train.config.schema import Preset
from rlhf_train.errors import RunError

ScoreFn = Callable[[list[str], list[str], list[str]], "list[float] | torch.Tensor"]


class RewardSource:
    def __init__(self, name: str, score_fn: ScoreFn):
        self.name = name
        self._score_fn = score_fn

    def scores(self, prompts: list[str], responses: list[str], labels: list[str]) -> torch.Tensor:
        return torch.as_tensor(self._score_fn(prompts, responses, labels), dtype=torch.float32)


def model_scorer(spec: str, preset: Preset, device: torch.device | None = None) -> ScoreFn:
    """Score `prompt + response` with a reward model (its own tokenizer, right padding), read at
    the last real token; the model runs on `device` (default: the CPU), the scores come back on the CPU."""
    from rlhf_train.models.reward_model import RewardModel

    model, tokenizer = RewardModel.from_spec(spec, dtype=preset.model.dtype, seed=preset.run.seed)
    model.requires_grad_(False).to(device or "cpu")
    tokenizer.padding_side = "right"

    @torch.no_grad()
    def score(prompts: list[str], responses: list[str], labels: list[str]) -> torch.Tensor:
        texts = [f"{p} {r}" for p, r in zip(prompts, responses)]
        encoded = tokenizer(texts, return_tensors="pt", padding=True).to(device or "cpu")
        return model(encoded["input_ids"], encoded["attention_mask"]).float().cpu()

    return score


def make_reward_source(preset: Preset) -> RewardSource:
    r = preset.reward
    if r.kind == "builtin":
        from rlhf_train.rewards.builtin import get_task

        task_name = preset.data.prompt_data.removeprefix("builtin:")
        try:
            task = get_task(task_name)
        except KeyError as exc:
            raise RunError(f"[data].prompt_data = builtin:{task_name}: {exc.args[0]}") from None
        return RewardSource(f"builtin:{task_name}", task.score)
    if r.kind == "function":
        from rlhf_train.rewards.function import load_reward_function

        return RewardSource(r.function, load_reward_function(r.function))
    if r.kind == "model":
        return RewardSource(r.model, model_scorer(r.model, preset))
    raise RunError("[reward].kind = \"remote\" is not available in this version yet; use builtin, function or model")
