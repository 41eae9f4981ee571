"""Resume on Ray: the trainer's process group SIGKILLed mid-run leaves no Ray process behind, and
`--resume` rebuilds the placement, restores the DeepSpeed checkpoints of actor and (here) the
engine's weights, and redoes the lost steps as the killed run computed them."""

from __future__ import annotations

import pytest

from tests.integration.test_ray_process import assert_no_ray_left, ray_processes
from tests.integration.test_resume import final_metrics, kill_after, prompts_by_step, resumed_from, run_to_end, segments

pytestmark = pytest.mark.slow


def test_sigkill_then_resume_on_ray_redoes_the_lost_steps_exactly(tmp_path):
    before = ray_processes()
    run = tmp_path / "run"
    ray = ('placement.mode="ray"', "train.max_steps=4")
    kill_after(run, 3, *ray, resume=False)
    assert_no_ray_left(before)
    lost = final_metrics(run)  # steps 1..3 at least, computed before the kill
    lost_prompts = prompts_by_step(run)
    done = run_to_end(run, *ray, resume=True)
    assert done.returncode == 0, done.stderr
    assert resumed_from(run) == [2] and segments(run)[-1] == [3, 4]
    redone = final_metrics(run)
    assert set(redone[3]) == set(lost[3])
    for name, value in lost[3].items():
        assert redone[3][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert prompts_by_step(run)[3] == lost_prompts[3]
    assert_no_ray_left(before)
