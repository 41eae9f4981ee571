"""rlhf-tui end to end in a real terminal (tmux): launch a run with keys, quit the TUI, and the run
goes on by itself; a new rlhf-tui finds it finished."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rlhf_train.telemetry.runs import process_alive

REPO = Path(__file__).resolve().parents[2]
STEPS = 40

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    """One tmux server of our own (-L), so the test never touches the user's sessions."""

    def __init__(self, cwd: Path) -> None:
        self.socket = f"rlhf-e2e-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True, cwd=self.cwd).stdout

    def start(self, name: str, command: list[str]) -> None:
        self("new-session", "-d", "-s", name, "-c", str(self.cwd), "-x", "100", "-y", "30",
             "-e", "TERM=xterm-256color", *command)
        self("set-option", "-t", name, "remain-on-exit", "on")

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)

    def wait_for(self, name: str, condition, timeout_s: float, what: str) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.screen(name)
            if condition(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; the screen:\n{text}")
            time.sleep(0.25)

    def pane_dead(self, name: str) -> bool:
        return self("display-message", "-p", "-t", name, "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_launch_quit_and_reattach_in_tmux(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text((REPO / "presets" / "tiny-cpu.toml").read_text()
                      .replace("max_steps = 300", f"max_steps = {STEPS}"))
    tui = [sys.executable, "-m", "rlhf_tui.app"]
    tmux = Tmux(tmp_path)
    trainer_pid = 0
    try:
        tmux.start("first", [*tui, str(preset)])
        tmux.wait_for("first", lambda s: "tiny.toml" in s and "Launch" in s, 30, "the preset builder")
        tmux("send-keys", "-t", "first", "C-r")
        tmux.wait_for("first", lambda s: f"/{STEPS}" in s and "running" in s and f"step 0/{STEPS}" not in s,
                      180, "the dashboard showing steps")
        (run_dir,) = (tmp_path / "runs").iterdir()
        trainer_pid = json.loads((run_dir / "run.json").read_text())["pid"]
        tmux("send-keys", "-t", "first", "q")
        tmux.wait_for("first", lambda s: "still running" in s, 10, "the quit prompt")
        tmux("send-keys", "-t", "first", "Enter")  # the focused default: quit and leave the run running
        deadline = time.monotonic() + 15
        while not tmux.pane_dead("first"):
            assert time.monotonic() < deadline, f"the TUI did not quit:\n{tmux.screen('first')}"
            time.sleep(0.2)
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "running" and process_alive(trainer_pid), "the run outlived the TUI"

        deadline = time.monotonic() + 300
        while json.loads((run_dir / "run.json").read_text())["status"] == "running":
            assert time.monotonic() < deadline, "the run did not finish by itself"
            time.sleep(0.5)
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"

        tmux.start("second", tui)
        screen = tmux.wait_for("second", lambda s: run_dir.name in s, 30, "the runs screen listing the run")
        assert "finished" in screen and f"{STEPS}/{STEPS}" in screen
    finally:
        tmux.kill()
        if trainer_pid and process_alive(trainer_pid):
            os.kill(trainer_pid, 9)
