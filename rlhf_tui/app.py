"""`rlhf-tui [RUN_DIR] [--root runs]`: the runs browser, and a live dashboard per run.

The TUI never owns a run: it reads run directories and telemetry events, and asks a run to stop
only when told to. Quitting it (or losing the SSH connection) leaves every run going."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from rlhf_train.errors import RunError
from rlhf_train.telemetry.client import resolve_run
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.screens.runs import RunsScreen


class RlhfTui(App):
    TITLE = "rlhf-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [Binding("q", "quit", "Quit (runs go on)")]

    def __init__(self, root: str | Path = "runs", run_dir: str | Path | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(self.root))
        if self.run_dir is not None:
            self.push_screen(DashboardScreen(self.run_dir))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rlhf-tui", description="Browse and watch rlhf-train runs. Quitting "
                                     "never stops a run.")
    parser.add_argument("run", nargs="?", metavar="RUN_DIR",
                        help="open this run's dashboard directly: a run directory, a run id under --root, or 'latest'")
    parser.add_argument("--root", default="runs", help="the directory holding run directories (default: runs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = None
    if args.run is not None:
        try:
            run_dir = resolve_run(args.run, args.root)
        except RunError as exc:
            print(f"rlhf-tui: {exc}", file=sys.stderr)
            return 2
    RlhfTui(root=args.root, run_dir=run_dir).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
