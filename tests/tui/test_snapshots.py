"""Snapshot tests (pytest-textual-snapshot) of the main screens at 80x24 and 160x48, on fixed data.

Everything on screen is pinned so the SVGs are the same run to run and day to day:
- run dirs are written here with fixed run.json fields, and events.jsonl with fixed `seq` and `t`
  (encoded with the trainer's own `encode_event`); a finished run's elapsed time is last − first `t`;
- the runs table's "started" age is computed against a fixed "now";
- log times are drawn in UTC (TZ=UTC), paths are relative to a temporary working directory;
- input cursors do not blink;
- the builder shows a fixed plan text (`FIXED_PLAN`, the plan of presets/tiny-cpu.toml when these
  snapshots were made): the plan's content is `rlhf-train check`'s and tested there, and changes
  to it must not fail the TUI's layout snapshots.

GPU readings come from FAKE data (this machine has no GPU): see `fake_gpu`.

Update the snapshots after a deliberate change of the screens with
`pytest tests/tui/test_snapshots.py --snapshot-update`, and look at the SVGs before committing.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from textual.widgets import Input, TabbedContent

from rlhf_train.config.schema import Preset, RunConfig
from rlhf_train.config.writer import preset_to_toml
from rlhf_train.telemetry import runs as runs_module
from rlhf_train.telemetry.protocol import encode_event
from rlhf_train.telemetry.rundir import RunDir, RunInfo
from rlhf_tui.app import RlhfTui
from rlhf_tui.components import runs_table
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.components.quit_modal import QuitModal
from rlhf_tui.components.runs_table import RunsTable
from rlhf_tui.screens import builder as builder_module
from rlhf_tui.screens.builder import BuilderScreen
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.screens.runs import RunsScreen

from .conftest import GIB, wait_until

SMALL, LARGE = (80, 24), (160, 48)
NOW = datetime(2025, 11, 24, 18, 0, 0, tzinfo=timezone.utc)
"""The fixed "now" the runs table measures ages against."""
T0 = 1_764_000_000.0
"""The first event's time (2025-11-24 16:00:00 UTC)."""


FIXED_PLAN = """\
preset tiny-cpu: grpo (group_norm advantages, KL k3 in loss, β = 0.001), engine hf, placement local

roles
  actor      ×1      CPU, in this process
  reference  ×1      CPU, in this process

batches
  prompts per rollout          16  (rollout_batch_size)
  samples per rollout          128 = 16 prompts × 8 samples
  samples per actor rank       128 = 128 / 1 data-parallel rank
  experience forward passes    1 per rank = ⌈128 / 128⌉ (micro_rollout_batch_size)
  gradient accumulation        1 = 128 / (128 micro × 1 ranks)
  optimizer steps per rollout  1 = 128 samples × 1 epochs / 128
  RL steps                     300  ([train].max_steps)
  optimizer steps in total     300 = 300 × 1

memory per worker
  model: 302.0 K parameters = P (from builtin:tiny (built in)); on host (CPU run)
  actor        4.61 MiB  weights 1.15 MiB [P × 4 B], gradients 1.15 MiB [P × 4 B], optimizer 2.30 MiB [P × 8 B]
  reference    1.15 MiB  weights 1.15 MiB [P × 4 B]
  activations are not included"""


FIXED_PRESET = """\
# Built-in tiny Llama learning single-digit addition with GRPO, on CPU, in a few minutes.
# Everything is created in code: no download, no GPU. `make run` starts this preset.
schema_version = 1

[run]
name = "tiny-cpu"
seed = 1

[model]
actor = "builtin:tiny"

[data]
prompt_data = "builtin:arith"
max_prompt_len = 16

[rollout]
engine = "hf"
n_samples_per_prompt = 8
max_new_tokens = 3
temperature = 1.0

[algo]
name = "grpo"
kl_estimator = "k3"
use_kl_loss = true
kl_coef = 0.001

[train]
max_steps = 300
rollout_batch_size = 16
train_batch_size = 128
micro_train_batch_size = 128
micro_rollout_batch_size = 128
actor_lr = 3e-4
lr_warmup_ratio = 0.0
lr_scheduler = "constant"

[deepspeed]
zero_stage = 0

[placement]
mode = "local"

[reward]
kind = "builtin"

[telemetry]
sample_interval_s = 2.0

[checkpoint]
save_steps = 100
"""
"""The builder's preset (presets/tiny-cpu.toml when these snapshots were made)."""


class FixedPlan:
    def render(self) -> str:
        return FIXED_PLAN


@pytest.fixture
def fixed_world(tmp_path, monkeypatch):
    """A temporary working directory, log times in UTC, the runs table's ages against `NOW` and the
    builder's plan `FIXED_PLAN`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(runs_table, "age", lambda start: runs_module.age(start, now=NOW))
    monkeypatch.setattr(builder_module, "make_plan", lambda preset: FixedPlan())
    yield tmp_path
    monkeypatch.undo()
    time.tzset()


def write_run(path: Path, status: str, start: str, end: str | None, reason: str = "",
              events: list[tuple[float, str, dict]] = ()) -> Path:
    """A run directory as the trainer leaves it, with fixed run.json fields and events."""
    path.mkdir(parents=True)
    (path / "preset.toml").write_text(preset_to_toml(Preset(run=RunConfig(name=path.name))))
    RunDir(path, RunInfo(id=path.name, name=path.name, pid=0, pgid=0, status=status, start=start, end=end,
                         reason=reason, argv=["rlhf-train", "presets/tiny-cpu.toml"])).write_info()
    lines = [encode_event(seq, t, type_, fields) for seq, (t, type_, fields) in enumerate(events, start=1)]
    (path / "events.jsonl").write_text("".join(line + "\n" for line in lines))
    return path


def short_run(name: str, steps: int, total: int, reward: float, status: str,
              reason: str = "") -> list[tuple[float, str, dict]]:
    """`steps` of `total` steps, reward/mean rising to `reward`, then the end."""
    events = [(T0, "hello", {"run": name, "name": name, "pid": 0, "roles": ["actor"], "total_steps": total,
                             "devices": []})]
    events += [(T0 + step, "metric", {"step": step, "values": {"reward/mean": reward * step / steps}})
               for step in range(1, steps + 1)]
    return events + [(T0 + steps + 1, "end", {"status": status, "reason": reason})]


def three_runs(root: Path) -> None:
    """A finished, a failed (with its reason) and a stopped run, started 3½ h, 2 days and 20 min
    before `NOW`."""
    write_run(root / "tiny-cpu-20251124T143000Z", "finished", "2025-11-24T14:30:00+00:00",
              "2025-11-24T14:34:10+00:00", events=short_run("tiny-cpu", 300, 300, 0.97, "finished"))
    write_run(root / "gsm8k-grpo-20251122T090000Z", "failed", "2025-11-22T09:00:00+00:00",
              "2025-11-22T09:12:00+00:00", reason="reward server http://10.0.0.5:5000 unreachable after 5 retries",
              events=short_run("gsm8k-grpo", 12, 500, 0.21, "failed",
                               "reward server http://10.0.0.5:5000 unreachable after 5 retries"))
    write_run(root / "smollm2-ppo-20251124T174000Z", "stopped", "2025-11-24T17:40:00+00:00",
              "2025-11-24T17:52:00+00:00", reason="stop requested",
              events=short_run("smollm2-ppo", 41, 200, 0.456, "stopped", "stop requested"))


def fake_gpu(step: int) -> dict:
    """FAKE NVML readings (this machine has no GPU): two 80 GiB devices whose use rises with the
    step, the second without temperature/power readings; host RAM holding the offloaded actor."""
    used0 = (20 + 6 * step) * GIB
    return {"devices": [
        {"index": 0, "name": "FAKE H100 80GB", "used_bytes": used0, "total_bytes": 80 * GIB,
         "util_percent": 40.0 + step,
         "mem_util_percent": 20.0, "temperature_c": 61.0, "power_w": 312.0,
         "processes": [{"pid": 4101, "used_bytes": used0 - 6 * GIB, "role": "actor"},
                       {"pid": 4102, "used_bytes": 4 * GIB, "role": "engine"},
                       {"pid": 999, "used_bytes": 2 * GIB, "role": None}]},
        {"index": 1, "name": "FAKE H100 80GB", "used_bytes": 70 * GIB + step * GIB, "total_bytes": 80 * GIB,
         "util_percent": 97.0, "mem_util_percent": None, "temperature_c": None, "power_w": None,
         "processes": [{"pid": 4103, "used_bytes": 70 * GIB + step * GIB, "role": "critic"}]},
    ], "host": {"total_bytes": 256 * GIB, "available_bytes": (160 - 4 * step) * GIB,
                "processes": [{"pid": 4101, "role": "actor", "rss_bytes": 48 * GIB}]}}


def dashboard_events() -> list[tuple[float, str, dict]]:
    """A finished 6-step PPO run of a hybrid engine, 10 s a step: role state transitions with
    offload and sleep, time/* metrics, throughput, samples and logs of every level."""
    rewards = [0.12, 0.18, 0.31, 0.29, 0.44, 0.52]
    events: list[tuple[float, str, dict]] = [
        (T0, "hello", {"run": "hybrid-ppo", "name": "hybrid-ppo", "pid": 0, "total_steps": 6, "devices": [],
                       "roles": ["actor", "critic", "reference", "reward", "engine"]}),
        (T0 + 0.5, "log", {"level": "info", "message": "models loaded; engine asleep, actor offloaded to host"}),
    ]
    for step in range(1, 7):
        t = T0 + 10 * (step - 1)
        for i, (role, before, after) in enumerate((
                ("engine", "asleep", "awake"), ("engine", "awake", "generating"), ("engine", "generating", "asleep"),
                ("reference", "idle", "loaded"), ("reference", "loaded", "idle"),
                ("actor", "offloaded", "loaded"), ("actor", "loaded", "training"),
                ("critic", "idle", "training"), ("critic", "training", "idle"),
                ("actor", "training", "offloaded"))):
            events.append((t + 1 + 0.5 * i, "state", {"role": role, "from": before, "to": after}))
        events.append((t + 6.5, "gpu", fake_gpu(step)))
        events.append((t + 9.5, "metric", {"step": step, "values": {
            "reward/mean": rewards[step - 1], "train/policy_loss": 0.30 - 0.04 * step, "train/kl": 0.002 * step,
            "train/critic_loss": 0.9 / step, "train/entropy": 1.2 - 0.05 * step, "train/clip_frac": 0.02 * step,
            "rollout/response_length": 180.0 + 7 * step, "perf/rollout_tokens_per_s": 2400.0 + 150 * step % 700,
            "perf/step_s": 10.0, "time/generate_s": 4.0, "time/make_experience_s": 1.5, "time/train_s": 3.0,
            "time/weight_sync_s": 0.5, "time/offload_s": 1.0, "mem/gpu_peak_bytes": (26 + 6 * step) * GIB}}))
        events.append((t + 9.6, "sample", {"step": step, "samples": [
            {"prompt": "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many?",
             "response": "In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72 in all. The answer is 72.",
             "reward": 1.0},
            {"prompt": "What is 17 × 3?", "response": "17 × 3 = 41", "reward": 0.0}]}))
        if step == 3:
            events.append((t + 9.7, "log", {"level": "warning", "message": "reward server slow: retry 1/5"}))
        if step == 5:
            events.append((t + 9.8, "log", {"level": "error", "message": "checkpoint upload failed: disk full; "
                                            "kept the local checkpoint"}))
    events.append((T0 + 59.9, "log", {"level": "info", "message": "saved checkpoint step 6"}))
    events.append((T0 + 60.0, "end", {"status": "finished", "reason": ""}))
    return events


def no_blink(app) -> None:
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


# -- the runs screen -------------------------------------------------------------------------------


async def runs_listed(pilot) -> None:
    """Wait for the three runs in the table, and for the table to size its columns to them (it
    does so when idle)."""
    app = pilot.app

    def listed() -> bool:
        if not isinstance(app.screen, RunsScreen):
            return False
        table = app.screen.query_one(RunsTable)
        return table.row_count == 3 and table.ordered_columns[0].content_width > len("run")

    await wait_until(pilot, listed, 10, "the runs table")
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_runs_screen(snap_compare, fixed_world, size):
    three_runs(fixed_world / "runs")

    assert snap_compare(RlhfTui(root="runs"), terminal_size=size, run_before=runs_listed)


def test_runs_screen_failed_run_highlighted(snap_compare, fixed_world):
    """The reason under the table, in full."""
    three_runs(fixed_world / "runs")
    assert snap_compare(RlhfTui(root="runs"), press=["down", "down"], terminal_size=SMALL, run_before=runs_listed)


def test_runs_screen_empty(snap_compare, fixed_world):
    async def ready(pilot):
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                         and "no runs" in str(pilot.app.screen.query_one("#runs-empty").content), 10, "the note")

    assert snap_compare(RlhfTui(root="runs"), terminal_size=SMALL, run_before=ready)


def test_runs_screen_light_theme(snap_compare, fixed_world):
    three_runs(fixed_world / "runs")

    async def ready(pilot):
        await runs_listed(pilot)
        await pilot.press("ctrl+t")

    assert snap_compare(RlhfTui(root="runs"), terminal_size=SMALL, run_before=ready)


# -- the dashboard ---------------------------------------------------------------------------------


def dashboard_app(root: Path) -> RlhfTui:
    run = write_run(root / "hybrid-ppo-20251124T160000Z", "finished", "2025-11-24T16:00:00+00:00",
                    "2025-11-24T16:01:00+00:00", events=dashboard_events())
    return RlhfTui(root="runs", run_dir=Path("runs") / run.name)


def replayed(*keys: str, light: bool = False):
    async def ready(pilot):
        app = pilot.app
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended, 10, "the replay")
        if light:
            await pilot.press("ctrl+t")
        await pilot.press(*keys)
        await pilot.pause(0.6)  # the curves are redrawn every 0.5 s at most
        await wait_until(pilot, lambda: not app.screen.curves_dirty, 5, "the curves")

    return ready


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_dashboard(snap_compare, fixed_world, size):
    assert snap_compare(dashboard_app(fixed_world / "runs"), terminal_size=size, run_before=replayed())


@pytest.mark.parametrize("page", ["2", "3", "4"])
def test_dashboard_compact_pages(snap_compare, fixed_world, page):
    assert snap_compare(dashboard_app(fixed_world / "runs"), terminal_size=SMALL, run_before=replayed(page))


def test_dashboard_all_curves(snap_compare, fixed_world):
    run_before = replayed("M")  # back from reward/mean to "all"
    assert snap_compare(dashboard_app(fixed_world / "runs"), terminal_size=LARGE, run_before=run_before)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_dashboard_light_theme(snap_compare, fixed_world, size):
    assert snap_compare(dashboard_app(fixed_world / "runs"), terminal_size=size, run_before=replayed(light=True))


# -- the preset builder ----------------------------------------------------------------------------


def builder_app(tmp_path: Path, replace: tuple[str, str] | None = None) -> RlhfTui:
    text = FIXED_PRESET
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    (tmp_path / "tiny.toml").write_text(text)
    return RlhfTui(root="runs", preset=Path("tiny.toml"))


def builder_ready(section: str | None = None, light: bool = False):
    async def ready(pilot):
        app = pilot.app
        await wait_until(pilot, lambda: isinstance(app.screen, BuilderScreen) and app.screen.plan_text, 10,
                         "the builder's plan")
        if section:
            app.screen.query_one(TabbedContent).active = f"tab-{section}"
        if light:
            await pilot.press("ctrl+t")
        await pilot.pause()
        no_blink(app)
        await app.workers.wait_for_complete()
        await pilot.pause()

    return ready


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_builder(snap_compare, fixed_world, size):
    assert snap_compare(builder_app(fixed_world), terminal_size=size, run_before=builder_ready())


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_builder_with_a_field_error(snap_compare, fixed_world, size):
    app = builder_app(fixed_world, ("rollout_batch_size = 16", "rollout_batch_size = 0"))
    assert snap_compare(app, terminal_size=size, run_before=builder_ready("train"))


def test_builder_light_theme(snap_compare, fixed_world):
    app = builder_app(fixed_world, ("rollout_batch_size = 16", "rollout_batch_size = 0"))
    assert snap_compare(app, terminal_size=SMALL, run_before=builder_ready("train", light=True))


# -- modals ----------------------------------------------------------------------------------------


def over_the_runs(modal_factory, light: bool = False):
    async def ready(pilot):
        app = pilot.app
        await runs_listed(pilot)
        if light:
            await pilot.press("ctrl+t")
        app.push_screen(modal_factory())
        await pilot.pause()

    return ready


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_confirm_stop_modal(snap_compare, fixed_world, size):
    three_runs(fixed_world / "runs")

    def modal() -> ConfirmModal:
        return ConfirmModal("Stop run tiny-cpu-20251124T143000Z?\nIt finishes its current step, saves a "
                            "checkpoint and exits.", yes="Stop")

    assert snap_compare(RlhfTui(root="runs"), terminal_size=size, run_before=over_the_runs(modal))


@pytest.mark.parametrize("light", [False, True], ids=["dark", "light"])
def test_quit_modal(snap_compare, fixed_world, light):
    three_runs(fixed_world / "runs")

    def modal() -> QuitModal:
        return QuitModal(["tiny-cpu-20251124T175500Z", "smollm2-ppo-20251124T175800Z"])

    assert snap_compare(RlhfTui(root="runs"), terminal_size=SMALL, run_before=over_the_runs(modal, light))
