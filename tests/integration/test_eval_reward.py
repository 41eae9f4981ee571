"""Eval reward: `[eval].every_steps` puts `eval/reward_mean` into the run's metric events at its
steps, and the dashboard draws it as a curve."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import events, run_cli
from tests.tui.conftest import wait_until


def test_eval_reward_in_events_and_in_the_dashboard_curves(tmp_path):
    run = tmp_path / "runs" / "evalrun"
    assert run_cli(run, "train.max_steps=5", "eval.every_steps=2", "eval.num_prompts=8") == 0
    metrics = {e["step"]: e["values"] for e in events(run, "metric")}
    assert [step for step, values in metrics.items() if "eval/reward_mean" in values] == [2, 4, 5]  # and the last
    for step in (2, 4, 5):
        values = metrics[step]
        assert 0.0 <= values["eval/reward_mean"] <= 1.0
        assert values["eval/response_length"] > 0 and values["time/eval_s"] > 0
    expected = [(float(s), metrics[s]["eval/reward_mean"]) for s in (2, 4, 5)]

    from rlhf_tui.app import RlhfTui
    from rlhf_tui.components.curves_panel import CurvesPanel
    from rlhf_tui.components.runs_table import RunsTable
    from rlhf_tui.screens.dashboard import DashboardScreen
    from rlhf_tui.screens.runs import RunsScreen

    async def scenario():
        app = RlhfTui(root=tmp_path / "runs")
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                             and app.screen.query_one(RunsTable).row_count == 1, 30, "the run in the runs table")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended, 30,
                             "the dashboard to replay the run")
            curves = app.screen.query_one(CurvesPanel)
            await wait_until(pilot, lambda: curves.shown, 30, "the curves")
            assert list(curves.shown) == ["reward/mean"]
            await pilot.press("m")
            await wait_until(pilot, lambda: "eval/reward_mean" in curves.shown, 30, "the eval curve")
            assert curves.shown == {"eval/reward_mean": expected}
            await pilot.press("q")

    asyncio.run(scenario())
