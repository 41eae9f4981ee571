"""Asking a run to stop, from outside its process (`rlhf-train stop`, the TUI).

The run's process handles the first SIGTERM by finishing its current step, saving a checkpoint
and ending with status `stopped`. The pid comes from run.json and is checked to still be an
rlhf-train process before anything is sent, so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from rlhf_train.errors import RunError
from rlhf_train.telemetry.client import read_run_info
from rlhf_train.telemetry.runs import process_alive


def is_rlhf_train_process(pid: int) -> bool:
    """True when `pid` runs rlhf-train (its command line names the package or the script)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"rlhf_train" in cmdline or b"rlhf-train" in cmdline


def request_stop(run_dir: Path) -> int:
    """Send the graceful stop request; returns the pid. `RunError` when there is nothing to stop."""
    info = read_run_info(run_dir)
    pid = int(info.get("pid") or 0)
    if info.get("status") != "running":
        raise RunError(f"run {run_dir.name} is not running (status {info.get('status')})")
    if not process_alive(pid) or not is_rlhf_train_process(pid):
        raise RunError(f"run {run_dir.name} says running but its process {pid} is gone (the run is lost)")
    os.kill(pid, signal.SIGTERM)
    return pid


def wait_for_end(run_dir: Path, timeout_s: float, poll_s: float = 0.2) -> str:
    """The run's status once it is no longer `running`, or `running` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = read_run_info(run_dir).get("status", "?")
        if status != "running" or time.monotonic() >= deadline:
            return status
        time.sleep(poll_s)
