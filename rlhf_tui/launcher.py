"""Start a run from the TUI without owning it, and stop one: politely first, by force only when asked.

`launch` runs exactly the headless command, `python -m rlhf_train.cli PRESET --run-dir DIR`
(no shell), in a new session and process group (`start_new_session=True`): closing the TUI or
losing the SSH connection (SIGHUP to the TUI's session) does not reach the run. stdin is /dev/null;
stdout and stderr go to `DIR/console.log`, so nothing the trainer prints depends on the TUI.

Stopping: `request_stop` (rlhf_train.telemetry.control) asks the trainer to finish its step, save
a checkpoint and exit. `force_stop` is the escalation for a run that does not: SIGTERM to the run's
process group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_train.config.loader import load_preset
from rlhf_train.errors import RunError
from rlhf_train.telemetry.client import read_run_info
from rlhf_train.telemetry.control import is_rlhf_train_process
from rlhf_train.telemetry.rundir import default_run_path
from rlhf_train.telemetry.runs import process_alive

CONSOLE_LOG = "console.log"
FORCE_GRACE_S = 10.0
"""How long `force_stop` waits after SIGTERM before it sends SIGKILL."""


class LaunchFailed(RunError):
    """The trainer did not start: its own error line (from console.log) is the message."""


@dataclass
class Launched:
    """A trainer process this TUI started. `exit_code` is set by a reaper thread when it exits, so
    the finished process never lingers as a zombie while the TUI is open."""

    run_dir: Path
    argv: list[str]
    process: subprocess.Popen
    exit_code: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def console_log(self) -> Path:
        return self.run_dir / CONSOLE_LOG


def unique_run_path(preset_path: Path, overrides: tuple[str, ...] = ()) -> Path:
    """The run directory the headless command would pick, made unique when two launches share a second."""
    base = default_run_path(load_preset(preset_path, list(overrides)))
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def launch(preset_path: Path, overrides: tuple[str, ...] = ()) -> Launched:
    """Start `rlhf-train PRESET [--set ...] --run-dir DIR` detached from the TUI; returns at once.
    `PresetInvalid` (from loading the preset) when the preset cannot run."""
    run_dir = unique_run_path(preset_path, overrides)
    run_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "rlhf_train.cli", str(preset_path), "--run-dir", str(run_dir)]
    for override in overrides:
        argv += ["--set", override]
    return _start(argv, run_dir, "wb")


def _start(argv: list[str], run_dir: Path, console_mode: str) -> Launched:
    """`argv` detached (own session, no stdin, output to RUN/console.log opened with
    `console_mode`), with a thread that reaps it (no zombie) and records its exit code."""
    with (run_dir / CONSOLE_LOG).open(console_mode) as console:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    launched = Launched(run_dir=run_dir, argv=argv, process=process)

    def reap() -> None:
        launched.exit_code = process.wait()

    threading.Thread(target=reap, name=f"reap {process.pid}", daemon=True).start()
    return launched


def resume(run_dir: Path) -> Launched:
    """Start `rlhf-train RUN/preset.toml --resume RUN` detached from the TUI (as `launch`): the
    run continues in its own directory from its last complete checkpoint. Its console output is
    appended to `RUN/console.log`."""
    argv = [sys.executable, "-m", "rlhf_train.cli", str(run_dir / "preset.toml"), "--resume", str(run_dir)]
    return _start(argv, run_dir, "ab")


def console_error(console_log: Path) -> str:
    """The trainer's own last `error:` line, else the last non-empty line of its console output."""
    try:
        lines = [line.strip() for line in console_log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


def wait_started(launched: Launched, timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
    """Return once the run has written its run.json (its events can be followed from then on);
    `LaunchFailed` naming the trainer's error when it exits first or does not start in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        if (launched.run_dir / "run.json").is_file():
            return
        code = launched.process.poll()
        if code is not None:
            why = console_error(launched.console_log) or f"it exited with code {code} and printed nothing"
            raise LaunchFailed(f"the run did not start: {why} (output in {launched.console_log})")
        if time.monotonic() >= deadline:
            raise LaunchFailed(f"the run wrote no run.json within {timeout_s:.0f} s; its output is in "
                               f"{launched.console_log}")
        time.sleep(poll_s)


def _signal_run(pid: int, pgid: int, sig: signal.Signals) -> None:
    """`sig` to the run's process group when the run leads its own group (launched by us or from a
    shell job), else to the run's process alone, never to a group it merely shares with others."""
    try:
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def force_stop(run_dir: Path, grace_s: float = FORCE_GRACE_S, poll_s: float = 0.1) -> str:
    """SIGTERM the run's process group, SIGKILL it if still alive after `grace_s`. Returns what was
    done ("terminated" or "killed"); `RunError` when the run has no live rlhf-train process.

    A killed run cannot write its ending: its run.json keeps `running`, which `rlhf-train runs` and
    the runs screen report as `lost`; its events, logs and last checkpoint stay readable."""
    info = read_run_info(run_dir)
    pid, pgid = int(info.get("pid") or 0), int(info.get("pgid") or 0)
    if not process_alive(pid) or not is_rlhf_train_process(pid):
        raise RunError(f"run {run_dir.name} has no live rlhf-train process to stop (pid {pid})")
    _signal_run(pid, pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_rlhf_train_process(pid):
            return "terminated"
        time.sleep(poll_s)
    _signal_run(pid, pgid, signal.SIGKILL)
    return "killed"
