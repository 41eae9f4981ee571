"""`rlhf-train watch` on recorded runs: the line view, the table view and raw NDJSON."""

from __future__ import annotations

import json

from rich.console import Console

from rlhf_train.cli import main
from rlhf_train.config.schema import Preset, RunConfig
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.protocol import decode_event
from rlhf_train.telemetry.rundir import RunDir
from rlhf_train.telemetry.watch import WatchView


def recorded_run(tmp_path, status="finished", reason=""):
    rd = RunDir.create(Preset(run=RunConfig(name="w")), tmp_path / "w")
    em = Emitter(rd.events_path)
    em.emit("hello", run="w", roles=["actor", "reference"], total_steps=2)
    em.emit("gpu", devices=[], reason="NVML not found", host={"total_bytes": 1})
    em.emit("state", role="actor", **{"from": "idle", "to": "training"})
    em.emit("metric", step=1, values={"reward/mean": 0.25, "train/kl": 0.001, "train/policy_loss": -0.5,
                                      "perf/step_s": 0.1, "perf/rollout_tokens_per_s": 640.0})
    em.emit("sample", step=1, samples=[{"prompt": "1 + 2 =", "response": "3", "reward": 1.0}])
    em.emit("metric", step=2, values={"reward/mean": None, "train/kl": 0.002})
    em.emit("end", status=status, reason=reason)
    em.close()
    rd.finish(status, reason)
    return rd.path


def test_line_view_of_a_finished_run(tmp_path, capsys):
    run = recorded_run(tmp_path)
    assert main(["watch", str(run)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "run w: roles actor, reference; 2 steps",
        "step 1/2  reward 0.250  kl 0.0010  loss -0.5000  s/step 0.10  tok/s 640",
        "step 2/2  reward N/A  kl 0.0020",
        "run finished",
    ]


def test_json_view_is_the_recorded_stream_and_since_filters(tmp_path, capsys):
    run = recorded_run(tmp_path)
    assert main(["watch", str(run), "--json", "--since", "4"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    recorded = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert printed == [recorded[0]] + recorded[4:], "hello first, then everything after seq 4"


def test_failed_run_exits_1_and_names_the_reason(tmp_path, capsys):
    run = recorded_run(tmp_path, "failed", "dataset p.jsonl is empty")
    assert main(["watch", str(run)]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "run failed: dataset p.jsonl is empty"


def test_table_view_folds_the_events(tmp_path):
    run = recorded_run(tmp_path)
    view = WatchView()
    for line in (run / "events.jsonl").read_text().splitlines():
        view.apply(decode_event(line))
    assert (view.step, view.status, view.role_state) == (2, "finished", {"actor": "training", "reference": "idle"})
    assert view.metrics["reward/mean"] is None and view.gpu_reason == "NVML not found"
    console = Console(record=True, width=100)
    console.print(view.render())
    text = console.export_text()
    for needle in ("w  finished  step 2/2", "reward/mean", "N/A", "actor", "training", "GPUs: NVML not found",
                   "'1 + 2 =' → '3'  reward 1"):
        assert needle in text, needle
