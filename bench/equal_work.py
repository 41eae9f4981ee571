"""What makes `vs_trl.py` honest, as pure functions (no torch; unit-tested in
tests/unit/test_bench_vs_trl.py): the work both trainers are given, the check that each really did
that work, and the figures and ratios printed from what they measured.

Equal work means, per side: the same number of RL steps; in every step exactly
`prompts_per_step × samples_per_prompt` samples scored by the shared reward function (counted by
the function itself, `arith_reward.py`); the same token budget as the side itself reports it
(samples per step, samples per prompt, `max_new_tokens`, one optimizer step per rollout); and no
step generating more than its budget (mean completion length ≤ `max_new_tokens`).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Work:
    """The run both sides are given (the tiny preset's GRPO settings by default)."""

    steps: int = 60
    prompts_per_step: int = 16
    samples_per_prompt: int = 8
    max_new_tokens: int = 3
    temperature: float = 1.0
    top_p: float = 1.0
    kl_coef: float = 0.001
    lr: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_norm: float = 1.0
    clip_eps: float = 0.2
    seed: int = 1

    @property
    def samples_per_step(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt

    def budget(self) -> dict[str, int]:
        """The token budget as each side must report it back."""
        return {"samples_per_step": self.samples_per_step, "samples_per_prompt": self.samples_per_prompt,
                "max_new_tokens": self.max_new_tokens, "optimizer_steps_per_rollout": 1}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SideRun:
    """What one run of one side measured: per step wall seconds, samples scored, summed reward and
    mean generated tokens per sample; the budget it ran with; its peak RSS."""

    side: str
    step_s: list[float]
    scored: list[int]
    reward_sum: list[float]
    mean_length: list[float]
    budget: dict[str, int]
    peak_rss_bytes: int
    extra: dict = field(default_factory=dict)

    @property
    def rewards(self) -> list[float]:
        """Mean reward of each step's samples (the reward curve)."""
        return [s / n for s, n in zip(self.reward_sum, self.scored)]


class UnequalWork(AssertionError):
    """The two sides did not do the same work; the message says what differed."""


def check_equal_work(work: Work, runs: list[SideRun]) -> None:
    """Raise `UnequalWork` unless every run did exactly `work` (see the module docstring)."""
    problems = []
    for run in runs:
        if len(run.step_s) != work.steps:
            problems.append(f"{run.side}: {len(run.step_s)} timed steps, expected {work.steps}")
        if len(run.scored) != work.steps or any(n != work.samples_per_step for n in run.scored):
            problems.append(f"{run.side}: samples scored per step {sorted(set(run.scored))} over {len(run.scored)} "
                            f"reward calls, expected {work.samples_per_step} in each of {work.steps}")
        if run.budget != work.budget():
            problems.append(f"{run.side}: ran with budget {run.budget}, expected {work.budget()}")
        if len(run.mean_length) != work.steps:
            problems.append(f"{run.side}: {len(run.mean_length)} completion-length readings, expected {work.steps}")
        over = [x for x in run.mean_length if not 0 < x <= work.max_new_tokens]
        if over:
            problems.append(f"{run.side}: mean completion lengths {over[:3]} outside (0, {work.max_new_tokens}]")
    if problems:
        raise UnequalWork("unequal work: " + "; ".join(problems))


def figures(work: Work, runs: list[SideRun], warmup: int) -> dict[str, float]:
    """One side's figures pooled over its runs, the first `warmup` steps of each left out:
    median s/step; samples/s = samples per step ÷ median s/step; generated tokens/s = mean
    generated tokens per step ÷ median s/step (so the two ratios differ only by the sides' mean
    completion lengths); mean reward per sample over the last
    `max(1, steps // 10)` steps (averaged over runs); largest peak RSS."""
    if warmup >= work.steps:
        raise ValueError(f"warm-up of {warmup} steps leaves nothing of a {work.steps}-step run; use fewer")
    kept = [s for run in runs for s in run.step_s[warmup:]]
    lengths = [length for run in runs for length in run.mean_length[warmup:]]
    median = statistics.median(kept)
    tail = max(1, work.steps // 10)
    return {
        "s_per_step": median,
        "samples_per_s": work.samples_per_step / median,
        "tokens_per_s": statistics.mean(lengths) * work.samples_per_step / median,
        "mean_length": statistics.mean(lengths),
        "reward_final": statistics.mean(r for run in runs for r in run.rewards[-tail:]),
        "reward_mean": statistics.mean(r for run in runs for r in run.rewards),
        "peak_rss_mib": max(run.peak_rss_bytes for run in runs) / 2**20,
    }


def ratios(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
    """Ours ÷ TRL's: throughput ratios > 1 mean ours is faster; `s_per_step_ratio` < 1 likewise."""
    return {"samples_per_s_ratio": ours["samples_per_s"] / theirs["samples_per_s"],
            "tokens_per_s_ratio": ours["tokens_per_s"] / theirs["tokens_per_s"],
            "s_per_step_ratio": ours["s_per_step"] / theirs["s_per_step"],
            "peak_rss_ratio": ours["peak_rss_mib"] / theirs["peak_rss_mib"],
            "reward_final_diff": ours["reward_final"] - theirs["reward_final"]}


def curve(values: list[float], buckets: int) -> list[float]:
    """`values` averaged over `buckets` consecutive, near-equal chunks (a short reward curve)."""
    buckets = max(1, min(buckets, len(values)))
    edges = [round(i * len(values) / buckets) for i in range(buckets + 1)]
    return [statistics.mean(values[a:b]) for a, b in zip(edges, edges[1:])]
