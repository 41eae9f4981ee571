"""The app around the screens: what `rlhf-tui TARGET` opens, launching from the builder, and
quitting with runs still going (the runs keep running unless the user says otherwise)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from rlhf_train.telemetry.runs import process_alive
from rlhf_tui.app import RlhfTui
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.components.quit_modal import QuitModal
from rlhf_tui.components.status_line import StatusLine
from rlhf_tui.screens.builder import BuilderScreen
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.screens.runs import RunsScreen

from .conftest import REPO, recorded_run, start_run, text_of, wait_for_run_json, wait_until


def tiny_preset(tmp_path: Path, max_steps: int) -> Path:
    """presets/tiny-cpu.toml with fewer steps and its runs under tmp_path/runs."""
    text = (REPO / "presets" / "tiny-cpu.toml").read_text().replace("max_steps = 300", f"max_steps = {max_steps}")
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace('name = "tiny-cpu"', f'name = "tiny-cpu"\noutput_dir = "{tmp_path / "runs"}"'))
    return path


def test_a_toml_target_opens_the_builder_over_the_runs_screen(tmp_path):
    preset = tiny_preset(tmp_path, 5)

    async def scenario():
        app = RlhfTui(root=tmp_path / "runs", preset=preset)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, BuilderScreen), 5, "the builder")
            assert app.screen.path == preset
            assert [type(s) for s in app.screen_stack[1:]] == [RunsScreen, BuilderScreen]
            await pilot.press("q")

    asyncio.run(scenario())


def test_clone_and_edit_opens_the_run_preset_unsaved(tmp_path):
    root = tmp_path / "runs"
    run = recorded_run(root)

    async def scenario():
        app = RlhfTui(root=root)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                             and app.screen.runs, 5, "the runs table")
            await pilot.press("c")
            await wait_until(pilot, lambda: isinstance(app.screen, BuilderScreen), 5, "the builder")
            assert app.screen.path is None and app.screen.source == run / "preset.toml"

    asyncio.run(scenario())


@pytest.mark.slow
def test_launch_from_the_builder_then_quit_leaving_the_run_going(tmp_path):
    preset = tiny_preset(tmp_path, 40)
    pid = 0

    async def scenario():
        nonlocal pid
        app = RlhfTui(root=tmp_path / "runs", preset=preset)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, BuilderScreen), 5, "the builder")
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), 120, "the run's dashboard")
            dash = app.screen
            await wait_until(pilot, lambda: "step 2/40" in text_of(dash.query_one(StatusLine)), 120, "step 2")
            (launched,) = app.launched.values()
            assert dash.run_dir == launched.run_dir
            pid = launched.pid
            await pilot.press("q")
            await wait_until(pilot, lambda: isinstance(app.screen, QuitModal), 5, "the quit prompt")
            assert app.screen.running == [launched.run_dir.name]
            await pilot.press("enter")  # the focused default: leave the run running
            await wait_until(pilot, lambda: not app.is_running, 5, "the app to exit")

    asyncio.run(scenario())
    assert process_alive(pid), "quitting the TUI left the run running"
    (run_dir,) = (tmp_path / "runs").iterdir()
    deadline = time.monotonic() + 180
    while json.loads((run_dir / "run.json").read_text())["status"] == "running":
        assert time.monotonic() < deadline, "the run did not finish by itself"
        time.sleep(0.2)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_quit_with_unsaved_preset_edits_asks_first(tmp_path):
    preset = tiny_preset(tmp_path, 5)

    async def scenario():
        app = RlhfTui(root=tmp_path / "runs", preset=preset)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, BuilderScreen), 5, "the builder")
            builder = app.screen
            field = builder.fields["[train].max_steps"]
            builder.query_one(f"#{field.widget_id}", Input).value = "7"
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the discard question")
            assert "Unsaved changes in " + str(preset) in str(app.screen.question)
            await pilot.press("n")
            assert app.screen is builder and app.is_running
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the discard question again")
            await pilot.press("y")
            await wait_until(pilot, lambda: not app.is_running, 5, "the app to quit")
        assert preset.read_text().count("max_steps = 5") == 1

    asyncio.run(scenario())


@pytest.mark.slow
def test_stop_twice_forces_a_run_that_does_not_stop(tmp_path, live_procs):
    run_dir = tmp_path / "runs" / "stuck"
    proc = start_run(run_dir, max_steps=100000)
    live_procs.append(proc)
    wait_for_run_json(run_dir, proc)
    deadline = time.monotonic() + 120
    while b'"metric"' not in (run_dir / "events.jsonl").read_bytes():
        assert time.monotonic() < deadline, "no step within 120 s"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGSTOP)  # stuck mid-run: the graceful request is never honoured

    async def scenario():
        app = RlhfTui(root=tmp_path / "runs", run_dir=run_dir)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the stop question")
            await pilot.press("y")
            await wait_until(pilot, lambda: str(run_dir) in app.stop_asked, 5, "the graceful request")
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the force question")
            assert "Force it?" in str(app.screen.question)
            await pilot.press("y")
            await wait_until(pilot, lambda: any(n.message == "stuck: killed" for n in app._notifications), 30,
                             "the forced stop")

    asyncio.run(scenario())
    assert proc.wait(timeout=10) == -signal.SIGKILL
