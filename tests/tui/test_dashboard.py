"""The runs screen and the dashboard on recorded runs, and the GPU panel on fake readings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from rlhf_tui.app import RlhfTui
from rlhf_tui.components.gpu_panel import GpuPanel
from rlhf_tui.components.metrics_panel import MetricsPanel
from rlhf_tui.components.reward_sparkline import RewardSparkline
from rlhf_tui.components.roles_panel import RolesPanel
from rlhf_tui.components.runs_table import RunsTable
from rlhf_tui.components.sample_panel import SamplePanel
from rlhf_tui.components.status_line import StatusLine
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.screens.runs import RunsScreen

from .conftest import GIB, REPO, REWARDS, recorded_run, text_of, wait_until


def test_runs_screen_lists_a_finished_run_and_enter_replays_it(tmp_path):
    root = tmp_path / "runs"
    run = recorded_run(root)

    async def scenario():
        app = RlhfTui(root=root)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                             and app.screen.query_one(RunsTable).row_count == 1, 5, "the runs table")
            table = app.screen.query_one(RunsTable)
            assert [str(c) for c in table.get_row_at(0)[:4]] == ["done", "[cyan]finished[/]", "5/5", "0.750"]
            assert table.selected_path == str(run)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended, 5,
                             "the dashboard to replay the run")
            dash = app.screen
            status = text_of(dash.query_one(StatusLine))
            assert "done" in status and "finished" in status and "step 5/5" in status, status
            assert dash.query_one(RewardSparkline).data == [r for r in REWARDS if r is not None]
            assert "reward/mean" in text_of(dash.query_one(MetricsPanel))
            assert "training" in text_of(dash.query_one(RolesPanel))
            assert "'1 + 2 =' → '3'" in text_of(dash.query_one(SamplePanel))
            await pilot.press("escape")
            assert isinstance(app.screen, RunsScreen)
            await pilot.press("q")
        assert app.return_code in (0, None)

    asyncio.run(scenario())


def fake_gpu_event() -> dict:
    """Fake data standing in for the NVML readings this CPU-only machine lacks: one 80 GiB device
    with 12 GiB in use, and a second whose readings are all missing (drawn as N/A)."""
    return {"devices": [
        {"index": 0, "name": "Fake H100", "used_bytes": 12 * GIB, "total_bytes": 80 * GIB, "util_percent": 42.0,
         "mem_util_percent": None, "temperature_c": None, "power_w": None, "processes": []},
        {"index": 1, "name": None, "used_bytes": None, "total_bytes": None, "util_percent": None, "processes": []},
    ], "host": {"total_bytes": 64 * GIB, "available_bytes": 32 * GIB, "processes": []}}


def gpu_text(tmp_path, gpu: dict) -> str:
    run = recorded_run(tmp_path / "runs", gpu=gpu)

    async def scenario() -> str:
        app = RlhfTui(root=tmp_path / "runs", run_dir=run)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended, 5,
                             "the replay")
            return text_of(app.screen.query_one(GpuPanel))

    return asyncio.run(scenario())


def test_gpu_panel_draws_memory_bars_from_fake_readings(tmp_path):
    text = gpu_text(tmp_path, fake_gpu_event())
    assert "12.0/80.0 GiB" in text and "Fake H100" in text and "util 42%" in text, text
    assert "N/A GiB" in text, "a device without readings is drawn as N/A"


def test_gpu_panel_says_plainly_there_is_no_gpu(tmp_path):
    text = gpu_text(tmp_path, {"devices": [], "reason": "NVML not found (no NVIDIA driver)"})
    assert text.strip() == "no GPU: NVML not found (no NVIDIA driver)"


def test_unknown_run_is_an_error_message_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rlhf_tui.app", str(tmp_path / "nope"), "--root", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("rlhf-tui: no run"), proc.stderr


def test_importing_the_app_imports_no_heavy_libraries():
    code = ("import sys, time; t = time.perf_counter(); import rlhf_tui.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'ray', 'deepspeed', 'vllm', 'transformers'}), time.perf_counter() - t)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("[] "), proc.stdout


def test_many_events_fold_without_losing_any(tmp_path):
    """20,000 metric events replayed: every reward arrives, the sparkline keeps only the last 500."""
    from rlhf_train.config.schema import Preset, RunConfig
    from rlhf_train.telemetry.emitter import Emitter
    from rlhf_train.telemetry.rundir import RunDir

    n = 20_000
    rd = RunDir.create(Preset(run=RunConfig(name="many")), tmp_path / "many")
    em = Emitter(rd.events_path)
    em.emit("hello", run="many", roles=["actor"], total_steps=n, devices=[])
    for step in range(1, n + 1):
        em.emit("metric", step=step, values={"reward/mean": step / n})
    em.emit("end", status="finished", reason="")
    em.close()
    rd.finish("finished")

    async def scenario():
        app = RlhfTui(root=tmp_path, run_dir=rd.path)
        async with app.run_test(size=(80, 24)) as pilot:
            start = time.monotonic()
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended, 20,
                             "the replay of 20,000 events")
            elapsed = time.monotonic() - start
            dash = app.screen
            assert dash.view.step == n and dash.view.status == "finished"
            data = dash.query_one(RewardSparkline).data
            assert len(data) == 500 and data[-1] == 1.0
            return elapsed

    elapsed = asyncio.run(scenario())
    print(f"20,000 events folded in {elapsed:.2f} s ({20_000 / elapsed:,.0f} events/s)")
