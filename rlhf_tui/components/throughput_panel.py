"""Rollout throughput: the `perf/rollout_tokens_per_s` history as a sparkline under its latest,
min and max, and the last step's time breakdown."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from rlhf_tui.components.time_breakdown import TimeBreakdown


class ThroughputPanel(Vertical):
    """Draws a tokens/s history (oldest first) and a `[(phase, seconds)]` breakdown."""

    def compose(self) -> ComposeResult:
        yield Static(id="tokens-label")
        yield Sparkline([], id="tokens-sparkline")
        yield TimeBreakdown(id="time-breakdown")

    def show(self, tokens_per_s: Sequence[float], breakdown: Sequence[tuple[str, float]], step: int | None) -> None:
        label = self.query_one("#tokens-label", Static)
        if tokens_per_s:
            label.update(f"rollout tokens/s  [b]{tokens_per_s[-1]:,.0f}[/b]  [dim]min {min(tokens_per_s):,.0f}  "
                         f"max {max(tokens_per_s):,.0f}[/]")
        else:
            label.update("[dim]rollout tokens/s: no perf/rollout_tokens_per_s yet[/]")
        self.query_one(Sparkline).data = list(tokens_per_s)
        self.query_one(TimeBreakdown).show(breakdown, step)
