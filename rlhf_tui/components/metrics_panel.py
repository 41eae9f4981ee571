"""The latest value of the key metrics (N/A where the run reported NaN/inf), in as many columns of
`name value` as the width holds."""

from __future__ import annotations

from rich.table import Table

from rlhf_train.telemetry.watch import KEY_METRICS, fmt
from rlhf_tui.components.sized_static import SizedStatic

COLUMN_WIDTH = 36
"""Room one `name value` column needs."""


class MetricsPanel(SizedStatic):
    """Draws a `{name: value}` dict: the key metrics that are present, in a fixed order, down the
    columns."""

    def draw(self, width: int, height: int, metrics: dict[str, float | None]) -> Table | str:
        shown = [name for name in KEY_METRICS if name in metrics]
        if not shown:
            return "no metrics yet"
        columns = max(1, min(width // COLUMN_WIDTH, len(shown)))
        rows = -(-len(shown) // columns)
        table = Table.grid(padding=(0, 1), expand=True)
        for _ in range(columns):
            table.add_column("metric", style="dim", no_wrap=True, overflow="ellipsis")
            table.add_column("value", justify="right", no_wrap=True)
        for r in range(rows):
            cells = []
            for name in shown[r::rows]:
                cells += [name, fmt(metrics[name])]
            table.add_row(*cells)
        return table
