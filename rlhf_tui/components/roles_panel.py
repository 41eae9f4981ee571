"""Every role of the run (actor, reference, critic, reward, engine...) with its current state."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

STATE_STYLE = {"idle": "dim", "offloaded": "yellow", "asleep": "yellow", "training": "green", "generating": "green"}


class RolesPanel(Static):
    """Draws a `{role: state}` dict."""

    def show(self, role_state: dict[str, str]) -> None:
        if not role_state:
            self.update("no roles yet")
            return
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column("role", no_wrap=True, overflow="ellipsis")
        table.add_column("state", justify="right", no_wrap=True, overflow="ellipsis")
        for role, state in role_state.items():
            table.add_row(role, f"[{STATE_STYLE.get(state, 'bold')}]{state}[/]")
        self.update(table)
