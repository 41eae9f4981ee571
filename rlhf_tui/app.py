"""`rlhf-tui [PRESET.toml | RUN_DIR] [--root runs]`: the runs browser, the preset builder and
launcher, and a live dashboard per run.

The TUI never owns a run: runs it launches live in their own session (see `launcher`), quitting
asks whether to leave them running (the default) and leaves every other run alone, and a run is
stopped only when the user confirms it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding

from rlhf_train.config.issues import PresetInvalid
from rlhf_train.errors import RunError
from rlhf_train.telemetry.client import resolve_run
from rlhf_train.telemetry.control import request_stop
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.components.quit_modal import QuitModal
from rlhf_tui.launcher import Launched, launch, wait_started
from rlhf_tui.messages import LaunchRequested
from rlhf_tui.screens.builder import BuilderScreen
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.screens.runs import RunsScreen


class RlhfTui(App):
    TITLE = "rlhf-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [Binding("q", "quit", "Quit (runs go on)"), Binding("ctrl+t", "toggle_dark", "Light/dark", show=False)]

    def __init__(self, root: str | Path = "runs", run_dir: str | Path | None = None,
                 preset: str | Path | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.preset = Path(preset) if preset is not None else None
        self.launched: dict[str, Launched] = {}
        """Runs started from this TUI, by run directory."""
        self.stop_asked: dict[str, float] = {}
        """Runs sent the graceful stop request, by run directory → monotonic time it was sent."""

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(self.root))
        if self.run_dir is not None:
            self.push_screen(DashboardScreen(self.run_dir))
        elif self.preset is not None:
            self.push_screen(BuilderScreen(self.preset))

    # -- launching -------------------------------------------------------------------------------

    @on(LaunchRequested)
    def launch_requested(self, message: LaunchRequested) -> None:
        self.start_run(message.preset_path)

    @work(thread=True, group="launch")
    def start_run(self, preset_path: Path) -> None:
        """Launch the saved preset, then open the run's dashboard once it has a run.json."""
        try:
            launched = launch(preset_path)
        except (PresetInvalid, RunError, OSError) as exc:
            self.call_from_thread(self.notify, f"cannot launch {preset_path}: {exc}", severity="error", timeout=15)
            return
        self.launched[str(launched.run_dir)] = launched
        self.call_from_thread(self.notify, f"launched {launched.run_dir.name} (pid {launched.pid})")
        try:
            wait_started(launched)
        except RunError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=30)
            return
        self.call_from_thread(self.push_screen, DashboardScreen(launched.run_dir))

    def running_launches(self) -> list[Launched]:
        return [run for run in self.launched.values() if run.process.poll() is None]

    # -- quitting --------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit. Unsaved preset edits are confirmed first; then, with runs launched here still going,
        ask what to do with them — leaving them running is the default."""
        dirty = [s for s in self.screen_stack if isinstance(s, BuilderScreen) and s.doc.changes(s.values())]
        if not dirty:
            self.quit_leaving_runs()
            return
        names = ", ".join(str(s.path or "untitled") for s in dirty)

        def answered(discard: bool | None) -> None:
            if discard:
                self.quit_leaving_runs()

        self.push_screen(ConfirmModal(f"Unsaved changes in {names}.\nQuit and discard them?", yes="Discard and quit",
                                      no="Keep editing"), answered)

    def quit_leaving_runs(self) -> None:
        running = self.running_launches()
        if not running:
            self.exit()
            return

        def answered(choice: str | None) -> None:
            if choice is None:
                return
            if choice == "stop":
                for run in running:
                    try:
                        request_stop(run.run_dir)
                    except RunError:
                        pass  # ended on its own meanwhile
            self.exit()

        self.push_screen(QuitModal([run.run_dir.name for run in running]), answered)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rlhf-tui", description="Build presets, launch runs and watch them. "
                                     "Quitting never stops a run unless you say so.")
    parser.add_argument("target", nargs="?", metavar="PRESET.toml | RUN_DIR",
                        help="open a preset in the builder (a new one when the .toml file does not exist yet), or "
                             "a run's dashboard: a run directory, a run id under --root, or 'latest'")
    parser.add_argument("--root", default="runs", help="the directory holding run directories (default: runs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = preset = None
    if args.target is not None and args.target.endswith(".toml"):
        preset = Path(args.target)
    elif args.target is not None:
        try:
            run_dir = resolve_run(args.target, args.root)
        except RunError as exc:
            print(f"rlhf-tui: {exc}", file=sys.stderr)
            return 2
    RlhfTui(root=args.root, run_dir=run_dir, preset=preset).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
