"""The latest value of the key metrics, one per line (N/A where the run reported NaN/inf)."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from rlhf_train.telemetry.watch import KEY_METRICS, fmt


class MetricsPanel(Static):
    """Draws a `{name: value}` dict: the key metrics first, in a fixed order, as they appear."""

    def show(self, metrics: dict[str, float | None]) -> None:
        shown = [name for name in KEY_METRICS if name in metrics]
        if not shown:
            self.update("no metrics yet")
            return
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column("metric", style="dim", no_wrap=True, overflow="ellipsis")
        table.add_column("value", justify="right", no_wrap=True)
        for name in shown:
            table.add_row(name, fmt(metrics[name]))
        self.update(table)
