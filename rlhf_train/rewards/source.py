"""Where a rollout's rewards come from, behind one call: `scores(prompts, responses, labels) -> [N]`.

Kinds (`[reward].kind`): `builtin` — the built-in task's verifier; `function` — a Python function
`path.py:name`; `model` — a reward model (sequence classifier) scoring prompt + response; `remote` —
an HTTP reward server (`rewards.remote`, e.g. `rlhf-train serve-rm`).

`raw_scores` are the kind's own numbers (what evaluation reports); `scores` are what training uses:
normalised by running statistics when `[reward].normalize` is on (`rewards.normalize`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlhf_train.config.schema import Preset
from rlhf_train.errors import RunError
from rlhf_train.rewards.normalize import RunningNormalizer

ScoreFn = Callable[[list[str], list[str], list[str]], "list[float] | torch.Tensor"]


class RewardSource:
    """A named score function, with optional running normalisation; `take_stats()` returns the
    metrics gathered since its last call (`reward/raw_mean` when normalising, and the remote
    client's counters for kind = remote)."""

    def __init__(self, name: str, score_fn: ScoreFn, *, normalize: bool = False):
        self.name = name
        self._score_fn = score_fn
        self.normalizer = RunningNormalizer() if normalize else None
        self._stats: dict[str, float] = {}

    def raw_scores(self, prompts: list[str], responses: list[str], labels: list[str]) -> torch.Tensor:
        """One score per sample, as the source gives it ([N], float32, CPU)."""
        scores = torch.as_tensor(self._score_fn(prompts, responses, labels), dtype=torch.float32).cpu()
        if scores.shape != (len(prompts),):
            raise RunError(f"reward {self.name} gave {tuple(scores.shape)} scores for {len(prompts)} samples; "
                           f"expected one score per sample")
        return scores

    def scores(self, prompts: list[str], responses: list[str], labels: list[str]) -> torch.Tensor:
        """The training scores: `raw_scores`, normalised when `[reward].normalize` is on."""
        raw = self.raw_scores(prompts, responses, labels)
        if self.normalizer is None:
            return raw
        self._stats["reward/raw_mean"] = raw.mean().item()
        return self.normalizer(raw)

    def take_stats(self) -> dict[str, float]:
        stats, self._stats = self._stats, {}
        take = getattr(self._score_fn, "take_stats", None)
        return {**stats, **(take() if take is not None else {})}

    def close(self) -> None:
        close = getattr(self._score_fn, "close", None)
        if close is not None:
            close()


def model_scorer(spec: str, *, dtype: str = "float32", seed: int = 0, device: torch.device | None = None) -> ScoreFn:
    """Score `prompt + response` with a reward model (its own tokenizer, right padding), read at
    the last real token; the model runs on `device` (default: the CPU), the scores come back on the CPU."""
    from rlhf_train.models.reward_model import RewardModel

    model, tokenizer = RewardModel.from_spec(spec, dtype=dtype, seed=seed)
    model.requires_grad_(False).to(device or "cpu")
    tokenizer.padding_side = "right"

    @torch.no_grad()
    def score(prompts: list[str], responses: list[str], labels: list[str]) -> torch.Tensor:
        texts = [f"{p} {r}" for p, r in zip(prompts, responses)]
        encoded = tokenizer(texts, return_tensors="pt", padding=True).to(device or "cpu")
        return model(encoded["input_ids"], encoded["attention_mask"]).float().cpu()

    return score


def builtin_scorer(task_name: str) -> ScoreFn:
    """The verifier of built-in task `task_name` (`arith`, `copy`)."""
    from rlhf_train.rewards.builtin import get_task

    try:
        return get_task(task_name).score
    except KeyError as exc:
        raise RunError(f"[data].prompt_data = builtin:{task_name}: {exc.args[0]}") from None


def remote_scorer(preset: Preset, emit: Callable[..., object] | None = None) -> ScoreFn:
    """The HTTP client of `[reward].urls` with the preset's timeout, retries, backoff and batching."""
    from rlhf_train.rewards.remote import RemoteReward, RetryPolicy

    r = preset.reward
    policy = RetryPolicy(timeout_s=r.timeout_s, retries=r.retries, backoff_s=r.backoff_s,
                         backoff_max_s=r.backoff_max_s, jitter=r.jitter)
    return RemoteReward(r.urls, policy, batch_size=r.batch_size, max_concurrency=r.max_concurrency, emit=emit,
                        seed=preset.run.seed)


def make_reward_source(preset: Preset, emit: Callable[..., object] | None = None,
                       model_fn: ScoreFn | None = None) -> RewardSource:
    """The reward of `preset`. `emit` receives the remote client's `log` events; `model_fn` scores
    for kind = model when the reward model lives elsewhere (the Ray reward workers)."""
    r = preset.reward
    if r.kind == "builtin":
        task_name = preset.data.prompt_data.removeprefix("builtin:")
        name, fn = f"builtin:{task_name}", builtin_scorer(task_name)
    elif r.kind == "function":
        from rlhf_train.rewards.function import load_reward_function

        name, fn = r.function, load_reward_function(r.function)
    elif r.kind == "model":
        name = r.model
        fn = model_fn or model_scorer(r.model, dtype=preset.model.dtype, seed=preset.run.seed)
    else:
        name, fn = ", ".join(r.urls), remote_scorer(preset, emit)
    return RewardSource(name, fn, normalize=r.normalize)
