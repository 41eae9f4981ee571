"""The runs under the runs root, refreshed every 2 s. Enter opens a run's dashboard, `s` asks a
running run to stop (after a confirmation). Quitting the TUI never stops a run."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from rlhf_train.errors import RunError
from rlhf_train.telemetry.control import request_stop
from rlhf_train.telemetry.runs import list_runs
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.components.runs_table import RunsTable
from rlhf_tui.messages import RunsListed
from rlhf_tui.screens.dashboard import DashboardScreen

REFRESH_S = 2.0


class RunsScreen(Screen):
    BINDINGS = [Binding("enter", "open_run", "Open", show=True), Binding("s", "stop_run", "Stop run"),
                Binding("r", "refresh", "Refresh")]

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root)
        self.runs: dict[str, object] = {}

    def compose(self) -> ComposeResult:
        yield Static(f"runs under {self.root}/  ·  enter: open its dashboard", id="runs-title")
        yield RunsTable(id="runs-table")
        yield Static("", id="runs-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(REFRESH_S, self.action_refresh)

    @work(thread=True, exclusive=True, group="runs")
    def action_refresh(self) -> None:
        self.post_message(RunsListed(list_runs(self.root)))

    @on(RunsListed)
    def show_runs(self, message: RunsListed) -> None:
        self.runs = {r.path: r for r in message.runs}
        self.query_one(RunsTable).show(message.runs)
        self.query_one("#runs-empty", Static).update(
            "" if message.runs else f"no runs under {self.root}/ yet — start one with `rlhf-train PRESET.toml`")

    @on(DataTable.RowSelected)
    def row_selected(self, message: DataTable.RowSelected) -> None:
        self.open(message.row_key.value)

    def action_open_run(self) -> None:
        self.open(self.query_one(RunsTable).selected_path)

    def open(self, path: str | None) -> None:
        if path:
            self.app.push_screen(DashboardScreen(path))

    def action_stop_run(self) -> None:
        path = self.query_one(RunsTable).selected_path
        run = self.runs.get(path) if path else None
        if run is None:
            self.notify("no run selected", severity="warning")
            return
        if run.status != "running":
            self.notify(f"{run.id} is not running ({run.status})", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                pid = request_stop(Path(run.path))
            except RunError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"asked {run.id} (pid {pid}) to stop: it finishes its step, saves and exits")
            self.action_refresh()

        self.app.push_screen(ConfirmModal(f"Stop run {run.id}?\nIt finishes its current step, saves a checkpoint "
                                          "and exits.", yes="Stop"), answered)
