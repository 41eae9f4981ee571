"""The dashboard's fold: downsampled histories, ETA maths, the role timeline, the time breakdown,
memory readings and the log tail — exact expectations."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlhf_train.telemetry.protocol import Event
from rlhf_tui import dashboard_state as ds
from rlhf_tui.components.roles_panel import step_ruler
from rlhf_tui.components.time_breakdown import split_cells
from rlhf_tui.dashboard_state import DashboardState, History, LogLine, Transition, ema

GIB = 2**30


def ev(seq: int, type_: str, t: float | None = None, **data) -> Event:
    return Event(seq, float(seq) if t is None else t, type_, data)


def test_history_keeps_every_point_until_full():
    h = History(capacity=4)
    for step in (1, 2, 3):
        h.add(step, step * 10)
    assert h.points() == [(1, 10), (2, 20), (3, 30)] and h.stride == 1


def test_history_merges_pairs_when_full_and_doubles_its_stride():
    h = History(capacity=4)
    for step in range(1, 5):
        h.add(step, step * 10)
    assert h.points() == [(1.5, 15), (3.5, 35)] and h.stride == 2
    h.add(5, 50)  # half a bucket: shown as its own point, the latest value stays visible
    assert h.points() == [(1.5, 15), (3.5, 35), (5, 50)]
    h.add(6, 60)
    assert h.points() == [(1.5, 15), (3.5, 35), (5.5, 55)]
    h.add(7, 70)
    h.add(8, 80)  # the fourth kept point: merged again
    assert h.points() == [(2.5, 25), (6.5, 65)] and h.stride == 4 and h.count == 8


def test_history_is_bounded_and_every_point_is_a_mean_of_stride_raw_points():
    h = History(capacity=8)
    for step in range(1, 1001):
        h.add(step, 2.0 * step)
        assert len(h.points()) <= 8
    # merges at 8, 16, ..., 512 raw points: stride 128; then 3 more full buckets and 104 pending
    assert h.stride == 128 and h.count == 1000
    assert h.points() == [(64.5, 129.0), (192.5, 385.0), (320.5, 641.0), (448.5, 897.0), (576.5, 1153.0),
                          (704.5, 1409.0), (832.5, 1665.0), (948.5, 1897.0)]


def test_history_capacity_must_be_even():
    with pytest.raises(ValueError, match="even"):
        History(capacity=3)


def test_ema_matches_its_recurrence():
    assert ema([1.0, 3.0, 3.0], 0.5) == [1.0, 2.0, 2.5]
    assert ema([1.0, 2.0], 0.0) == [1.0, 2.0]
    assert ema([], 0.9) == []


def test_metric_events_fill_histories_skip_nulls_and_set_the_breakdown():
    s = DashboardState()
    s.apply(ev(1, "hello", run="r", roles=["actor"], total_steps=10))
    s.apply(ev(2, "metric", step=1, values={"reward/mean": 0.5, "train/kl": None, "time/train_s": 2.0,
                                             "time/offload_s": 0.25, "time/generate_s": 1.0, "time/zeta_s": 0.5,
                                             "time/alpha_s": 0.125, "time/make_experience_s": 0.5}))
    s.apply(ev(3, "metric", step=2, values={"reward/mean": None}))
    assert s.series["reward/mean"].points() == [(1.0, 0.5)]
    assert "train/kl" not in s.series
    # known phases in the order a step runs them, then the others by name
    assert s.breakdown == [("generate", 1.0), ("make_experience", 0.5), ("train", 2.0), ("offload", 0.25),
                           ("alpha", 0.125), ("zeta", 0.5)]
    assert s.breakdown_step == 1, "a metric event without time/*_s keeps the last breakdown"


def test_metric_names_beyond_the_cap_keep_no_history(monkeypatch):
    monkeypatch.setattr(ds, "MAX_SERIES", 2)
    s = DashboardState()
    s.apply(ev(1, "metric", step=1, values={"a": 1.0, "b": 2.0, "c": 3.0}))
    assert sorted(s.series) == ["a", "b"] and s.view.metrics["c"] == 3.0


def test_seconds_per_step_and_eta_from_metric_event_times():
    s = DashboardState()
    s.apply(ev(1, "hello", t=100.0, run="r", roles=[], total_steps=10))
    assert s.seconds_per_step() is None and s.eta_s() is None
    s.apply(ev(2, "metric", t=101.0, step=1, values={"perf/step_s": 0.75}))
    assert s.seconds_per_step() == 0.75, "one metric event: its perf/step_s"
    assert s.eta_s() == 9 * 0.75
    s.apply(ev(3, "metric", t=103.0, step=2, values={}))
    s.apply(ev(4, "metric", t=105.0, step=4, values={}))
    assert s.seconds_per_step() == (105.0 - 101.0) / (4 - 1)
    assert s.eta_s() == pytest.approx(6 * 4 / 3)
    assert s.elapsed_s(now=110.0, ended=False) == 10.0
    assert s.elapsed_s(now=110.0, ended=True) == 5.0
    s.apply(ev(5, "end", t=106.0, status="finished", reason=""))
    assert s.eta_s() is None, "no ETA once the run is over"


def test_eta_looks_back_over_the_last_window_of_steps():
    s = DashboardState()
    s.apply(ev(1, "hello", run="r", roles=[], total_steps=1000))
    for step in range(1, 101):  # 10 s per step for 80 steps, then 1 s per step
        s.apply(ev(1 + step, "metric", t=10.0 * min(step, 80) + max(0, step - 80), step=step, values={}))
    assert s.seconds_per_step() == 1.0 and s.eta_s() == 900.0
    assert ds.ETA_WINDOW == 20


def test_eta_unknown_without_a_step_count():
    s = DashboardState()
    s.apply(ev(1, "hello", run="r", roles=[], total_steps=None))
    s.apply(ev(2, "metric", step=1, values={"perf/step_s": 1.0}))
    assert s.eta_s() is None


def test_timeline_columns_line_up_across_roles():
    s = DashboardState()
    s.apply(ev(1, "hello", roles=["actor", "reference"], total_steps=2))
    s.apply(ev(2, "state", role="engine", **{"from": "asleep", "to": "generating"}))
    s.apply(ev(3, "state", role="engine", **{"from": "generating", "to": "asleep"}))
    s.apply(ev(4, "state", role="actor", **{"from": "idle", "to": "training"}))
    s.apply(ev(5, "metric", step=1, values={}))
    s.apply(ev(6, "state", role="actor", **{"from": "training", "to": "warming-up"}))
    tl = s.timeline()
    assert tl.steps == [1, 1, 1, 2]
    assert tl.rows == {"actor": ["idle", "idle", "training", "warming-up"],
                       "reference": ["idle", "idle", "idle", "idle"],
                       "engine": ["generating", "asleep", "asleep", "asleep"]}
    assert s.view.role_state == {"actor": "warming-up", "reference": "idle", "engine": "asleep"}


def test_timeline_keeps_the_last_transitions_and_folds_older_ones_into_its_base(monkeypatch):
    s = DashboardState()
    s.transitions = ds.deque(maxlen=2)
    s.apply(ev(1, "state", role="actor", **{"from": "offloaded", "to": "loaded"}))
    s.apply(ev(2, "state", role="actor", **{"from": "loaded", "to": "training"}))
    s.apply(ev(3, "state", role="critic", **{"from": "offloaded", "to": "loaded"}))
    assert list(s.transitions) == [Transition(1, "actor", "training"), Transition(1, "critic", "loaded")]
    assert s.timeline_base == {"actor": "loaded", "critic": "offloaded"}
    assert s.timeline().rows == {"actor": ["training", "training"], "critic": ["offloaded", "loaded"]}


def test_gpu_events_keep_rolling_memory_windows():
    s = DashboardState()
    for i in range(ds.MEMORY_POINTS + 5):
        s.apply(ev(i + 1, "gpu", devices=[
            {"index": 0, "used_bytes": (i % 4) * 20 * GIB, "total_bytes": 80 * GIB},
            {"index": 1, "used_bytes": None, "total_bytes": 80 * GIB}],
            host={"total_bytes": 100 * GIB, "available_bytes": 75 * GIB, "processes": []}))
    assert len(s.gpu_memory[0]) == ds.MEMORY_POINTS
    assert list(s.gpu_memory[0])[-4:] == [0.25, 0.5, 0.75, 0.0]
    assert 1 not in s.gpu_memory, "missing readings are skipped"
    assert list(s.host_memory)[-1] == 0.25 and len(s.host_memory) == ds.MEMORY_POINTS


def test_logs_samples_and_drop_notices():
    s = DashboardState()
    s.apply(ev(1, "log", t=5.0, level="warning", message="slow"))
    s.apply(ev(9, "log", t=6.0, level="warning", message="viewer fell behind", dropped=7, first_dropped_seq=2))
    s.apply(ev(10, "sample", step=3, samples=[{"prompt": "p", "response": "r", "reward": 1.0}]))
    assert list(s.logs) == [LogLine(1, 5.0, "warning", "slow", 0), LogLine(9, 6.0, "warning", "viewer fell behind", 7)]
    assert s.view.dropped == 7
    assert s.samples == [{"prompt": "p", "response": "r", "reward": 1.0}] and s.sample_step == 3


def test_split_cells_sums_to_the_width_by_largest_remainder():
    assert split_cells([1.0, 1.0, 2.0], 8) == [2, 2, 4]
    assert split_cells([1.0, 1.0, 1.0], 10) == [4, 3, 3]
    assert split_cells([0.5, 0.0001, 9.4999], 20) == [1, 0, 19]
    assert split_cells([0.0, 0.0], 10) == [0, 0]


def test_step_ruler_labels_the_first_column_of_each_step_when_it_fits():
    assert step_ruler([7, 7, 8, 8, 9, 9, 10, 10], 8) == "7 8 9 10"
    assert step_ruler([7, 7, 8, 8, 9, 10, 10, 10], 8) == "7 8 9   ", "10 starts next to 9: no room"
    assert step_ruler([98, 99, 100, 100], 2) == "98"


def test_the_fold_imports_no_heavy_library():
    code = ("import sys, rlhf_tui.dashboard_state; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'textual', 'ray', 'vllm'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
