"""The stop flow shared by the runs screen and the dashboard.

First ask (after a confirm): the graceful request — the run finishes its step, saves a checkpoint
and exits `stopped`. Asking again while it still runs offers the escalation (after a second,
explicit confirm): SIGTERM to its process group, SIGKILL after a grace period."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import App

from rlhf_train.errors import RunError
from rlhf_train.telemetry.client import read_run_info
from rlhf_train.telemetry.control import request_stop
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.launcher import FORCE_GRACE_S, force_stop


def ask_to_stop(app: App, run_dir: Path, asked: dict[str, float]) -> None:
    """Confirm, then stop `run_dir`; `asked` maps run paths to when the graceful stop was sent."""
    name = run_dir.name
    try:
        status = read_run_info(run_dir).get("status")
    except RunError as exc:
        app.notify(str(exc), severity="error")
        return
    if status != "running":
        app.notify(f"{name} is not running ({status})", severity="warning")
        return
    since = asked.get(str(run_dir))
    if since is None:
        def graceful(yes: bool | None) -> None:
            if not yes:
                return
            try:
                pid = request_stop(run_dir)
            except RunError as exc:
                app.notify(str(exc), severity="error")
                return
            asked[str(run_dir)] = time.monotonic()
            app.notify(f"asked {name} (pid {pid}) to stop: it finishes its step, saves and exits. "
                       "Press stop again to force it.")

        app.push_screen(ConfirmModal(f"Stop run {name}?\nIt finishes its current step, saves a checkpoint and "
                                     "exits.", yes="Stop"), graceful)
        return

    def forced(yes: bool | None) -> None:
        if yes:
            app.run_worker(lambda: _force(app, run_dir), thread=True, group="force-stop")

    app.push_screen(ConfirmModal(
        f"{name} was asked to stop {time.monotonic() - since:.0f} s ago and is still running.\nForce it? "
        f"SIGTERM to its process group now, SIGKILL after {FORCE_GRACE_S:.0f} s. The current step is lost; "
        "the last checkpoint, logs and events stay.", yes="Force stop"), forced)


def _force(app: App, run_dir: Path) -> None:
    try:
        done = force_stop(run_dir)
    except RunError as exc:
        app.call_from_thread(app.notify, str(exc), severity="warning")
        return
    app.call_from_thread(app.notify, f"{run_dir.name}: {done}", severity="warning")
