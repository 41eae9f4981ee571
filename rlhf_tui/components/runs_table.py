"""The runs under the runs root, one row each: run, status, step, reward, started."""

from __future__ import annotations

from textual.widgets import DataTable

from rlhf_train.telemetry.runs import RunSummary, age

STATUS_STYLE = {"running": "green", "finished": "cyan", "failed": "red", "stopped": "yellow", "lost": "red"}


class RunsTable(DataTable):
    """Draws a list of `RunSummary`; the row key is the run's path, so the cursor stays on the same
    run across refreshes."""

    COLUMNS = ("run", "status", "step", "reward", "started")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key in self.COLUMNS:
            self.add_column(key, key=key)

    def show(self, runs: list[RunSummary]) -> None:
        rows = {r.path: self.cells(r) for r in runs}
        if list(rows) == [key.value for key in self.rows]:
            for path, cells in rows.items():  # the same runs: update in place (no flicker, widths grow)
                for column, value in zip(self.COLUMNS, cells):
                    self.update_cell(path, column, value, update_width=True)
            return
        keep = self.selected_path
        self.clear()
        for path, cells in rows.items():
            self.add_row(*cells, key=path)
        if keep in rows:
            self.move_cursor(row=list(rows).index(keep), animate=False)

    @staticmethod
    def cells(r: RunSummary) -> tuple[str, ...]:
        step = "-" if r.step is None else f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        reward = "-" if r.reward is None else f"{r.reward:.3f}"
        status = f"[{STATUS_STYLE[r.status]}]{r.status}[/]" if r.status in STATUS_STYLE else r.status
        return r.id, status, step, reward, age(r.start)

    @property
    def selected_path(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no valid cursor
            return None
