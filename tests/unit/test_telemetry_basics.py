"""Run directory and the event file: the contracts of DESIGN.md."""

from __future__ import annotations

import json
import os

import pytest

from rlhf_train.config.schema import Preset, RunConfig
from rlhf_train.config.loader import check_preset
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.protocol import encode_event
from rlhf_train.telemetry.rundir import RunDir


def test_run_dir_layout_and_status(tmp_path):
    preset = Preset(run=RunConfig(name="demo", output_dir=str(tmp_path)))
    rd = RunDir.create(preset)
    assert rd.path.parent == tmp_path and rd.path.name.startswith("demo-")
    assert sorted(p.name for p in rd.path.iterdir()) == ["checkpoints", "preset.toml", "run.json"]
    info = json.loads((rd.path / "run.json").read_text())
    assert info["status"] == "running" and info["pid"] == os.getpid() and info["pgid"] == os.getpgid(0)
    assert info["versions"]["python"]
    assert check_preset(rd.path / "preset.toml").preset == preset  # the resolved preset runs as-is
    rd.finish("failed", "dataset x.jsonl is empty")
    info = json.loads((rd.path / "run.json").read_text())
    assert (info["status"], info["reason"]) == ("failed", "dataset x.jsonl is empty") and info["end"]
    with pytest.raises(ValueError):
        rd.finish("exploded")


def test_events_are_numbered_in_order_with_the_envelope(tmp_path):
    seen = []
    emitter = Emitter(tmp_path / "events.jsonl")
    emitter.sinks.append(seen.append)
    emitter.emit("hello", run="r1")
    emitter.emit("metric", step=1, values={"reward/mean": 0.5})
    emitter.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert lines == seen
    events = [json.loads(line) for line in lines]
    assert [(e["v"], e["seq"], e["type"]) for e in events] == [(1, 1, "hello"), (1, 2, "metric")]
    assert events[1]["values"] == {"reward/mean": 0.5} and events[0]["t"] <= events[1]["t"]


def test_unknown_event_type_is_refused_and_non_finite_metrics_become_null():
    with pytest.raises(ValueError, match="unknown event type"):
        encode_event(1, 0.0, "metrics", {})
    line = encode_event(1, 0.0, "metric", {"step": 3, "values": {"x": float("nan"), "y": float("inf"), "z": 2.5}})
    assert json.loads(line)["values"] == {"x": None, "y": None, "z": 2.5}
    with pytest.raises(ValueError):
        encode_event(1, 0.0, "log", {"level": float("nan")})
