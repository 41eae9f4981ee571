"""The runs screen and the dashboard on recorded runs, and the GPU panel on fake readings."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

from rlhf_tui.app import RlhfTui
from rlhf_tui.components.curves_panel import CurvesPanel
from rlhf_tui.components.gpu_panel import GpuPanel
from rlhf_tui.components.log_panel import LogPanel
from rlhf_tui.components.metrics_panel import MetricsPanel
from rlhf_tui.components.roles_panel import RolesPanel
from rlhf_tui.components.runs_table import RunsTable
from rlhf_tui.components.sample_panel import SamplePanel
from rlhf_tui.components.status_line import StatusLine
from rlhf_tui.components.time_breakdown import TimeBreakdown
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.screens.runs import RunsScreen

from rlhf_train.config.schema import Preset, RunConfig
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir

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
            assert re.fullmatch(r"done  ● finished  step 5/5  0\.\d\d s/step  elapsed 0:00:00\n", status), status
            await wait_until(pilot, lambda: dash.query_one(CurvesPanel).shown, 2, "the curves")
            assert dash.query_one(CurvesPanel).shown == {
                "reward/mean": [(step, r) for step, r in enumerate(REWARDS, start=1) if r is not None]}
            assert "reward/mean" in text_of(dash.query_one(MetricsPanel))
            roles = text_of(dash.query_one(RolesPanel)).splitlines()
            assert roles[1:3] == ["actor      training    ▮", "reference  idle        ▯"], roles
            assert text_of(dash.query_one(SamplePanel)) == "     1 '1 + 2 =' → '3'\n"
            await pilot.press("escape")
            assert isinstance(app.screen, RunsScreen)
            await pilot.press("q")
        assert app.return_code in (0, None)

    asyncio.run(scenario())


def fake_gpu_event() -> dict:
    """Fake data standing in for the NVML readings this CPU-only machine lacks: one 80 GiB device
    with 12 GiB in use (8 by our actor, 4 by a process that is not ours), and a second whose
    readings are all missing (drawn as N/A); host RAM half used, 6 GiB of it the actor's."""
    return {"devices": [
        {"index": 0, "name": "Fake H100", "used_bytes": 12 * GIB, "total_bytes": 80 * GIB, "util_percent": 42.0,
         "mem_util_percent": None, "temperature_c": None, "power_w": None,
         "processes": [{"pid": 101, "used_bytes": 8 * GIB, "role": "actor"},
                       {"pid": 102, "used_bytes": 4 * GIB, "role": None}]},
        {"index": 1, "name": None, "used_bytes": None, "total_bytes": None, "util_percent": None, "processes": None},
    ], "host": {"total_bytes": 64 * GIB, "available_bytes": 32 * GIB,
                "processes": [{"pid": 101, "role": "actor", "rss_bytes": 6 * GIB}]}}


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
    lines = [line.rstrip() for line in gpu_text(tmp_path, fake_gpu_event()).splitlines()]
    assert lines == [
        "GPU 0 Fake H100  util 42%",
        "██░░░░░░░░ 12.0/80.0 GiB  15%  ▂",  # bar, used/total, share, then the history (one reading)
        "  actor 8.0 GiB · pid 102 4.0 GiB",  # our roles by name; another process by pid
        "GPU 1 N/A  util N/A",
        "░░░░░░░░░░ N/A GiB",  # a device without readings
        "  processes: N/A",
        "host RAM  (offloaded states live here)",
        "█████░░░░░ 32.0/64.0 GiB  50%  ▅",
        "  actor 6.0 GiB",
    ], lines


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
    """20,000 metric events replayed: every reward arrives; the curve keeps a downsampled history
    (History(512): stride 64 after 16,384 points, then 56 full buckets and 32 pending = 313 points)."""
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
            history = dash.state.series["reward/mean"]
            assert history.count == n and history.stride == 64
            points = dash.query_one(CurvesPanel).shown["reward/mean"]
            assert points == history.points() and len(points) == 313
            assert points[0][0] == 32.5 and points[-1][0] == 19_984.5  # means of steps 1-64 and 19,969-20,000
            return elapsed

    elapsed = asyncio.run(scenario())
    print(f"20,000 events folded in {elapsed:.2f} s ({20_000 / elapsed:,.0f} events/s)")


def hybrid_run(root) -> object:
    """A finished 3-step run of a hybrid engine (one fake GPU, labelled as such: this machine has
    none), written with the trainer's RunDir and Emitter: role states, time breakdowns with an
    offload phase, logs including a drop notice, samples."""
    rd = RunDir.create(Preset(run=RunConfig(name="hybrid")), root / "hybrid")
    em = Emitter(rd.events_path)
    em.emit("hello", run="hybrid", name="hybrid", pid=os.getpid(), roles=["actor", "engine"], total_steps=3,
            devices=[])
    em.emit("gpu", **fake_gpu_event())
    for step in (1, 2, 3):
        for role, before, after in (("engine", "asleep", "generating"), ("engine", "generating", "asleep"),
                                    ("actor", "offloaded", "training"), ("actor", "training", "offloaded")):
            em.emit("state", role=role, **{"from": before, "to": after})
        em.emit("metric", step=step, values={
            "reward/mean": step / 4, "train/policy_loss": -step / 8, "train/kl": step / 100,
            "time/generate_s": 1.0, "time/make_experience_s": 0.5, "time/train_s": 2.0, "time/offload_s": 0.5})
        em.emit("sample", step=step, samples=[{"prompt": f"{step} + 1 =", "response": str(step + 1), "reward": 1.0},
                                              {"prompt": "2 + 2 =", "response": "five", "reward": 0.0}])
    em.emit("state", role="engine", **{"from": "asleep", "to": "compiling"})
    em.emit("log", level="warning", message="reward server slow: retry 1/5")
    em.emit("log", level="warning", message="viewer fell behind: 5 events dropped", dropped=5, first_dropped_seq=3)
    em.emit("log", level="error", message="checkpoint failed: disk full")
    em.emit("end", status="stopped", reason="stop requested")
    em.close()
    rd.finish("stopped", "stop requested")
    return rd.path


def test_replay_of_a_hybrid_run_shows_every_panel_and_the_keys_work(tmp_path):
    run = hybrid_run(tmp_path / "runs")

    async def scenario():
        app = RlhfTui(root=tmp_path / "runs", run_dir=run)
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended, 5,
                             "the replay")
            dash = app.screen
            assert not dash.has_class("-compact") and not dash.query(".-off-page")
            status = text_of(dash.query_one(StatusLine))
            assert re.fullmatch(r"hybrid  ● stopped  step 3/3  0\.\d\d s/step  elapsed 0:00:00\nstop requested\n",
                                status), status

            roles = [line.rstrip() for line in text_of(dash.query_one(RolesPanel)).splitlines()]
            assert roles == [
                "role       state       1   2   3   4",  # one column per transition, under its step
                "actor      offloaded   ▯▯▮▯▯▯▮▯▯▯▮▯▯",
                "engine     compiling   ▮▯▯▯▮▯▯▯▮▯▯▯?",  # an unknown state: drawn as ?, not an error
                "▮ generating/training  ▮ awake/loaded  ▯ idle",
                "▯ asleep/offloaded  ? other",
            ], roles

            breakdown = text_of(dash.query_one(TimeBreakdown)).splitlines()
            assert breakdown[0].startswith("step 3: 4.000 s  ") and breakdown[0].endswith("█")
            assert breakdown[1:] == ["■ generate 1.000 s (25%)  ■ make_experience 0.500 s (12%)  ■ train 2.000 s (50%)",
                                     "■ offload 0.500 s (12%)"], breakdown
            bar = dash.query_one(TimeBreakdown).content
            widths = [span.end - span.start for span in bar.spans if bar.plain[span.start] == "█"]
            assert widths == [18, 9, 37, 9], "73 cells in proportion 2:1:4:1, the odd cell to the largest remainder"

            log = [line[9:].rstrip() for line in text_of(dash.query_one(LogPanel)).splitlines()]
            assert log == ["warning reward server slow: retry 1/5", "warning ⚠ viewer fell behind: 5 events dropped",
                           "error   checkpoint failed: disk full"], log
            assert dash.query_one(LogPanel).border_subtitle == "5 events dropped (they are in events.jsonl)"

            sample = text_of(dash.query_one(SamplePanel)).splitlines()
            assert sample == ["     1 '3 + 1 =' → '4'", "     0 '2 + 2 =' → 'five'"], sample
            assert dash.query_one(SamplePanel).border_subtitle == "step 3"
            assert "GPU 0 Fake H100  util 42%" in text_of(dash.query_one(GpuPanel))

            curves = dash.query_one(CurvesPanel)
            await wait_until(pilot, lambda: curves.shown, 2, "the curves")
            assert curves.shown == {"reward/mean": [(1.0, 0.25), (2.0, 0.5), (3.0, 0.75)]}
            assert curves.smoothed == {"reward/mean": [0.25, 0.275, 0.3225]}  # EMA 0.9, on by default
            await pilot.press("e")
            assert curves.smoothed == {} and curves.border_title == "curves: reward/mean  ·  raw"
            await pilot.press("m")
            assert list(curves.shown) == ["train/policy_loss"]
            await pilot.press("m", "m")
            assert list(curves.shown) == ["reward/mean", "train/policy_loss", "train/kl"], "all curves at once"
            await pilot.press("m")
            assert list(curves.shown) == ["reward/mean"], "and round again"
            await pilot.press("M")
            assert curves.border_title == "curves: all  ·  raw"

            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            visible = {panel.id for panel in dash.query(".panel") if panel.display}
            assert dash.has_class("-compact") and visible == {"curves-panel", "throughput-panel"}
            await pilot.press("2")
            visible = {panel.id for panel in dash.query(".panel") if panel.display}
            assert visible == {"gpu-panel"}
            await pilot.press("4")
            visible = {panel.id for panel in dash.query(".panel") if panel.display}
            assert visible == {"sample-panel", "log-panel"}

    asyncio.run(scenario())
