"""The runs under the runs root, one row each: run, status, step, reward, started, and why it ended
(a failed or stopped run's reason, cut to `REASON_WIDTH`)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from rlhf_train.telemetry.runs import RunSummary, age

REASON_WIDTH = 60
STATUS_STYLE = {"running": "green", "finished": "cyan", "failed": "red", "stopped": "yellow", "lost": "red"}


def cell_width(cell: str | Text) -> int:
    """Cells wide a cell is drawn (a str cell is markup)."""
    return (Text.from_markup(cell) if isinstance(cell, str) else cell).cell_len


class RunsTable(DataTable):
    """Draws a list of `RunSummary`; the row key is the run's path, so the cursor stays on the same
    run across refreshes."""

    COLUMNS = ("run", "status", "step", "reward", "started", "reason")

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
        else:
            keep = self.selected_path
            self.clear()
            for path, cells in rows.items():
                self.add_row(*cells, key=path)
            if keep in rows:
                self.move_cursor(row=list(rows).index(keep), animate=False)
        self.fit_columns(list(rows.values()))

    def fit_columns(self, rows: list[tuple[str | Text, ...]]) -> None:
        """Size the columns to their cells now. DataTable measures new cells only when idle, and
        lines drawn before that stay cached with the old widths (the first rows showed cut to
        their header's width until the next refresh)."""
        for i, column in enumerate(self.ordered_columns):
            widths = [cell_width(row[i]) for row in rows]
            column.content_width = max([column.label.cell_len, *widths])

    @staticmethod
    def cells(r: RunSummary) -> tuple[str | Text, ...]:
        step = "-" if r.step is None else f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        reward = "-" if r.reward is None else f"{r.reward:.3f}"
        status = f"[{STATUS_STYLE[r.status]}]{r.status}[/]" if r.status in STATUS_STYLE else r.status
        reason = r.reason if len(r.reason) <= REASON_WIDTH else r.reason[:REASON_WIDTH - 1] + "…"
        reason_style = "red" if r.status in ("failed", "lost") else ""
        return r.id, status, step, reward, age(r.start), Text(reason, style=reason_style)

    @property
    def selected_path(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no valid cursor
            return None
