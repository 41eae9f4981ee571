"""The TUI on live runs of the tiny CPU preset: the dashboard follows a run to its end, and the
runs screen stops one."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from rlhf_train.telemetry.protocol import read_events_file
from rlhf_tui.app import RlhfTui
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.components.curves_panel import CurvesPanel
from rlhf_tui.components.roles_panel import RolesPanel
from rlhf_tui.components.runs_table import RunsTable
from rlhf_tui.components.status_line import StatusLine
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.screens.runs import RunsScreen

from .conftest import start_run, text_of, wait_for_run_json, wait_until

pytestmark = pytest.mark.slow


def test_dashboard_follows_a_live_run_to_the_end(tmp_path, live_procs):
    run_dir = tmp_path / "runs" / "live"
    proc = start_run(run_dir, max_steps=30)
    live_procs.append(proc)
    wait_for_run_json(run_dir, proc)

    async def scenario():
        app = RlhfTui(root=tmp_path / "runs", run_dir=run_dir)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")
            dash = app.screen
            curves = dash.query_one(CurvesPanel)
            seen_running, seen_points, seen = [], set(), set()

            def done() -> bool:
                text = text_of(dash.query_one(StatusLine))
                seen.add(text[:60])
                if re.match(r"live  ● running  step ([1-9]|[12]\d)/30  \d+\.\d\d s/step  ETA \d+:\d\d:\d\d  elapsed", text):
                    seen_running.append(text)
                seen_points.add(len(curves.shown.get("reward/mean", [])))
                return "step 30/30" in text and "finished" in text

            await wait_until(pilot, done, 240, "step 30/30 and finished on the status line")
            assert seen_running, f"the status line showed the steps, s/step and ETA while it ran: {sorted(seen)}"
            assert any(0 < n < 30 for n in seen_points), f"the curve grew while the run ran: {sorted(seen_points)}"
            await wait_until(pilot, lambda: len(curves.shown["reward/mean"]) == 30, 2, "the last curve point")
            rewards = [e.get("values")["reward/mean"] for e in read_events_file(run_dir / "events.jsonl")
                       if e.type == "metric"]
            assert curves.shown["reward/mean"] == [(float(step), r) for step, r in enumerate(rewards, start=1)]
            roles = text_of(dash.query_one(RolesPanel)).splitlines()
            assert [line.split()[:2] for line in roles[1:4]] == [["actor", "idle"], ["reference", "idle"],
                                                                 ["engine", "idle"]], roles

    asyncio.run(scenario())
    assert proc.wait(timeout=60) == 0


def test_stop_a_live_run_from_the_runs_screen(tmp_path, live_procs):
    root = tmp_path / "runs"
    run_dir = root / "to-stop"
    proc = start_run(run_dir, max_steps=300)
    live_procs.append(proc)
    wait_for_run_json(run_dir, proc)

    def status() -> str:
        return json.loads((run_dir / "run.json").read_text()).get("status", "?")

    async def scenario():
        app = RlhfTui(root=root)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                             and app.screen.query_one(RunsTable).row_count == 1, 10, "the live run in the table")
            # Like `rlhf-train stop`'s own test: ask once the run is stepping (models loaded).
            await wait_until(pilot, lambda: getattr(app.screen.runs.get(str(run_dir)), "step", None), 120,
                             "the run's first step in the table")
            assert app.screen.query_one(RunsTable).selected_path == str(run_dir)
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirmation")
            await pilot.press("y")
            await pilot.pause(0.2)
            assert isinstance(app.screen, RunsScreen)
            notes = [n.message for n in app._notifications]
            assert any(note.startswith("asked to-stop") for note in notes), notes
            await wait_until(pilot, lambda: status() != "running", 120, "run.json to leave running")
            await pilot.press("q")

    asyncio.run(scenario())
    assert status() == "stopped"
    assert proc.wait(timeout=60) == 0


def test_stop_a_live_run_from_its_dashboard(tmp_path, live_procs):
    root = tmp_path / "runs"
    run_dir = root / "stop-here"
    proc = start_run(run_dir, max_steps=300)
    live_procs.append(proc)
    wait_for_run_json(run_dir, proc)

    async def scenario():
        app = RlhfTui(root=root, run_dir=run_dir)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")
            dash = app.screen
            # Ask once the run is stepping (models loaded), as `rlhf-train stop`'s own test does.
            await wait_until(pilot, lambda: dash.view.step >= 1, 120, "the run's first step")
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirmation")
            assert "Stop run stop-here?" in str(app.screen.question)
            await pilot.press("y")
            await wait_until(pilot, lambda: app.screen is dash, 5, "the dashboard again")
            assert str(run_dir) in app.stop_asked
            await wait_until(pilot, lambda: dash.ended, 120, "the run's end event")
            first_line = text_of(dash.query_one(StatusLine)).splitlines()[0]
            assert re.match(r"stop-here  ● stopped  step \d+/300 ", first_line), first_line
            await pilot.press("s")  # a stopped run is not stopped again
            await pilot.pause(0.2)
            assert app.screen is dash
            assert any(n.message == "stop-here is not running (stopped)" for n in app._notifications)

    asyncio.run(scenario())
    assert json.loads((run_dir / "run.json").read_text())["status"] == "stopped"
    assert proc.wait(timeout=60) == 0
