"""`rlhf-train runs`: summaries from run.json and the events' tail; dead `running` runs are `lost`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from rlhf_train.cli import main
from rlhf_train.config.schema import Preset, RunConfig
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir
from rlhf_train.telemetry.runs import age, list_runs, render_table


def make_run(root, name, status, steps, pid=None, reason="", start=""):
    rd = RunDir.create(Preset(run=RunConfig(name=name)), root / name)
    emitter = Emitter(rd.events_path)
    emitter.emit("hello", run=name, total_steps=10)
    for step in range(1, steps + 1):
        emitter.emit("metric", step=step, values={"reward/mean": step / 10})
    emitter.close()
    if pid is not None:
        rd.info.pid = pid
    if start:
        rd.info.start = start
    if status == "running":
        rd.write_info()
    else:
        rd.finish(status, reason)
    return rd


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_statuses_steps_rewards_and_order(tmp_path):
    make_run(tmp_path, "a", "finished", 10, start="2026-01-01T00:00:00+00:00")
    make_run(tmp_path, "b", "failed", 3, reason="dataset x.jsonl is empty", start="2026-01-02T00:00:00+00:00")
    make_run(tmp_path, "c", "running", 4, start="2026-01-03T00:00:00+00:00")  # this process: alive
    make_run(tmp_path, "d", "running", 2, pid=dead_pid(), start="2026-01-04T00:00:00+00:00")
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [(r.id, r.status, r.step, r.total_steps, r.reward) for r in runs] == [
        ("d", "lost", 2, 10, 0.2), ("c", "running", 4, 10, 0.4), ("b", "failed", 3, 10, 0.3),
        ("a", "finished", 10, 10, 1.0)]
    table = render_table(runs).splitlines()
    assert table[0].split() == ["RUN", "STATUS", "STEP", "REWARD", "STARTED", "REASON"]
    assert table[3].split()[:4] == ["b", "failed", "3/10", "0.300"] and table[3].endswith("dataset x.jsonl is empty")


def test_json_output_and_empty_root(tmp_path, capsys):
    make_run(tmp_path, "a", "finished", 1)
    assert main(["runs", "--root", str(tmp_path), "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert (run["id"], run["status"], run["step"]) == ("a", "finished", 1)
    assert main(["runs", "--root", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out.strip() == "no runs"


def test_age_words():
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert age((now - timedelta(seconds=42)).isoformat(), now) == "42s ago"
    assert age((now - timedelta(hours=3, minutes=5)).isoformat(), now) == "3h ago"
    assert age("garbage", now) == "?"
