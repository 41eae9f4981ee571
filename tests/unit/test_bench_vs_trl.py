"""The honesty logic of bench/vs_trl.py (bench/equal_work.py): the equal-work check and the
figures/ratios it prints. The benchmark itself is not run here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from equal_work import SideRun, UnequalWork, Work, check_equal_work, curve, figures, ratios  # noqa: E402

WORK = Work(steps=4, prompts_per_step=2, samples_per_prompt=3, max_new_tokens=3)


def run(side="ours", steps=4, scored=None, budget=None, lengths=None, step_s=0.5, rss=100 * 2**20) -> SideRun:
    scored = [6] * steps if scored is None else scored
    return SideRun(side, [step_s] * steps, scored, [3.0] * len(scored), lengths or [2.5] * steps,
                   budget or WORK.budget(), rss)


def test_equal_work_passes():
    check_equal_work(WORK, [run("ours"), run("trl")])


@pytest.mark.parametrize("bad, needle", [
    (dict(scored=[6, 6, 5, 6]), "samples scored per step [5, 6]"),
    (dict(scored=[6, 6, 6]), "over 3 reward calls"),
    (dict(scored=[6] * 5), "over 5 reward calls"),
    (dict(steps=3, scored=[6] * 4), "3 timed steps"),
    (dict(budget={**WORK.budget(), "max_new_tokens": 4}), "'max_new_tokens': 4"),
    (dict(budget={**WORK.budget(), "optimizer_steps_per_rollout": 2}), "'optimizer_steps_per_rollout': 2"),
    (dict(lengths=[2.0, 3.5, 2.0, 2.0]), "outside (0, 3]"),
])
def test_unequal_work_is_named(bad, needle):
    with pytest.raises(UnequalWork) as error:
        check_equal_work(WORK, [run("ours"), run("trl", **bad)])
    assert "trl: " in str(error.value) and needle in str(error.value)
    assert "ours:" not in str(error.value)


def test_figures_and_ratios():
    ours = run("ours", step_s=0.25, rss=100 * 2**20)
    ours.step_s = [9.0, 0.25, 0.25, 0.3]  # the first (warm-up) step is left out
    ours.reward_sum = [0.0, 3.0, 3.0, 6.0]  # mean rewards 0, .5, .5, 1
    theirs = run("trl", step_s=1.0, rss=200 * 2**20)
    f_ours, f_theirs = figures(WORK, [ours], warmup=1), figures(WORK, [theirs], warmup=1)
    assert f_ours["s_per_step"] == 0.25 and f_ours["samples_per_s"] == 24.0
    assert f_ours["tokens_per_s"] == pytest.approx(2.5 * 6 / 0.25)
    assert f_ours["reward_final"] == 1.0 and f_ours["reward_mean"] == 0.5
    r = ratios(f_ours, f_theirs)
    assert r["samples_per_s_ratio"] == 4.0 and r["tokens_per_s_ratio"] == pytest.approx(4.0)
    assert r["peak_rss_ratio"] == 0.5 and r["reward_final_diff"] == 0.5
    with pytest.raises(ValueError, match="warm-up of 4 steps"):
        figures(WORK, [ours], warmup=4)


def test_curve_buckets():
    assert curve([1, 1, 3, 3], 2) == [1, 3]
    assert curve([1.0, 2.0], 10) == [1.0, 2.0]
    assert len(curve(list(range(25)), 10)) == 10
