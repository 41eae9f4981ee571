"""Helpers for the Pilot tests: run directories written by the real trainer pieces (RunDir +
Emitter), live trainer subprocesses, and waiting on the app without hanging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf_train.config.schema import Preset, RunConfig
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]
GIB = 2**30
REWARDS = [0.125, 0.25, None, 0.5, 0.75]
"""reward/mean of the recorded run's steps; None is a NaN the trainer reported as null."""


def recorded_run(root: Path, name: str = "done", gpu: dict | None = None, status: str = "finished",
                 reason: str = "") -> Path:
    """A finished run of len(REWARDS) steps, written with the trainer's own RunDir and Emitter."""
    rd = RunDir.create(Preset(run=RunConfig(name=name)), root / name)
    em = Emitter(rd.events_path)
    em.emit("hello", run=name, name=name, pid=os.getpid(), roles=["actor", "reference"], total_steps=len(REWARDS),
            devices=[])
    em.emit("gpu", **(gpu if gpu is not None else {"devices": [], "reason": "NVML not found",
                                                   "host": {"total_bytes": 8 * GIB}}))
    em.emit("state", role="actor", **{"from": "idle", "to": "training"})
    for step, reward in enumerate(REWARDS, start=1):
        em.emit("metric", step=step, values={"reward/mean": reward, "train/kl": 0.001 * step,
                                             "train/policy_loss": -0.5, "perf/step_s": 0.1})
        em.emit("sample", step=step, samples=[{"prompt": "1 + 2 =", "response": "3", "reward": 1.0}])
    em.emit("end", status=status, reason=reason)
    em.close()
    rd.finish(status, reason)
    return rd.path


def start_run(run_dir: Path, max_steps: int) -> subprocess.Popen:
    """`rlhf-train presets/tiny-cpu.toml` as its own process group, writing to `run_dir`."""
    return subprocess.Popen(
        [sys.executable, "-m", "rlhf_train.cli", "presets/tiny-cpu.toml", "--run-dir", str(run_dir),
         "--set", f"train.max_steps={max_steps}", "--set", 'placement.mode="local"'],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_for_run_json(run_dir: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError):
            assert proc.poll() is None, f"the trainer exited early: {proc.stderr.read().decode()[-2000:]}"
            time.sleep(0.1)
    raise AssertionError(f"no run.json in {run_dir} after {timeout_s} s")


@pytest.fixture
def live_procs():
    """Trainer subprocesses started by a test; any still alive at the end are killed."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


async def wait_until(pilot, condition, timeout_s: float, what: str) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await pilot.pause(0.05)


def text_of(widget) -> str:
    """What a Static-like component shows, as plain text."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(widget.content)
    return console.export_text()
