"""The reward history as Textual's built-in Sparkline, with the latest/min/max in its title."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Sparkline


class RewardSparkline(Sparkline):
    """Draws a bounded sequence of `reward/mean` values (oldest first)."""

    def show(self, rewards: Sequence[float]) -> None:
        self.data = list(rewards)
        if rewards:
            self.border_title = (f"reward/mean  last {rewards[-1]:.3f}  min {min(rewards):.3f}  "
                                 f"max {max(rewards):.3f}")
        else:
            self.border_title = "reward/mean"
