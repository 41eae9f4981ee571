"""The runs under the runs root, refreshed every 2 s. Enter opens a run's dashboard (live, or
replayed from events.jsonl), `s` stops a running run (see `stopping`), `c` opens its preset in the
builder as a new preset ("clone and edit"), `u` resumes a stopped, failed or lost run from its last
checkpoint (in its own directory) and opens its dashboard, `n` starts a new preset. Quitting never
stops a run."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from rlhf_train.telemetry.runs import RunSummary, list_runs
from rlhf_tui.components.runs_table import RunsTable
from rlhf_tui.messages import RunsListed
from rlhf_tui.screens.builder import BuilderScreen
from rlhf_tui.screens.dashboard import DashboardScreen
from rlhf_tui.stopping import ask_to_stop

REFRESH_S = 2.0


class RunsScreen(Screen):
    BINDINGS = [Binding("enter", "open_run", "Open", show=True), Binding("s", "stop_run", "Stop run"),
                Binding("c", "clone_run", "Clone & edit"), Binding("n", "new_preset", "New preset"),
                Binding("r", "refresh", "Refresh"), Binding("u", "resume_run", "Resume", show=False)]

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root)
        self.runs: dict[str, RunSummary] = {}

    def compose(self) -> ComposeResult:
        yield Static(f"runs under {self.root}/  ·  enter: open its dashboard", id="runs-title")
        yield RunsTable(id="runs-table")
        yield Static("", id="runs-detail")
        yield Static("", id="runs-empty")
        yield Footer(compact=True)

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
        self.query_one("#runs-detail").display = bool(message.runs)
        self.query_one("#runs-empty", Static).update(
            "" if message.runs else f"no runs under {self.root}/ yet — n: a new preset to launch, or run "
            "`rlhf-train PRESET.toml`")
        self.show_detail()

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        """Under the table, the highlighted run's end reason in full (the column cuts it)."""
        run = self.runs.get(self.query_one(RunsTable).selected_path or "")
        detail = Text()
        if run is not None and run.reason:
            detail.append(f"{run.id} {run.status}: ", style="bold")
            detail.append(run.reason, style="red" if run.status in ("failed", "lost") else "")
        self.query_one("#runs-detail", Static).update(detail)

    @on(DataTable.RowSelected)
    def row_selected(self, message: DataTable.RowSelected) -> None:
        self.open(message.row_key.value)

    def action_open_run(self) -> None:
        self.open(self.query_one(RunsTable).selected_path)

    def open(self, path: str | None) -> None:
        if path:
            self.app.push_screen(DashboardScreen(path))

    def selected_run(self) -> RunSummary | None:
        path = self.query_one(RunsTable).selected_path
        run = self.runs.get(path) if path else None
        if run is None:
            self.notify("no run selected", severity="warning")
        return run

    def action_stop_run(self) -> None:
        run = self.selected_run()
        if run is not None:
            ask_to_stop(self.app, Path(run.path), self.app.stop_asked)

    def action_resume_run(self) -> None:
        from rlhf_tui.launcher import resume

        run = self.selected_run()
        if run is None:
            return
        if run.status == "running":
            self.notify(f"{run.id} is still running", severity="warning")
            return
        resume(Path(run.path))
        self.notify(f"resuming {run.id} (its console output: {Path(run.path) / 'console.log'})")
        self.open(run.path)

    def action_clone_run(self) -> None:
        """The run's resolved preset.toml in the builder, unsaved: save-as gives the new preset."""
        run = self.selected_run()
        if run is None:
            return
        preset = Path(run.path) / "preset.toml"
        if not preset.is_file():
            self.notify(f"{run.id} has no preset.toml to clone", severity="error")
            return
        self.app.push_screen(BuilderScreen(source=preset))

    def action_new_preset(self) -> None:
        self.app.push_screen(BuilderScreen())
