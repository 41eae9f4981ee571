"""Training curves over steps, drawn with plotext: one metric at a time, or all of them as small
multiples. With smoothing on, the raw series is drawn grey under its EMA."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual_plotext import PlotextPlot

from rlhf_tui.dashboard_state import ema

CURVES = ("reward/mean", "eval/reward_mean", "train/policy_loss", "train/kl", "train/critic_loss",
          "rollout/response_length")
ALL = "all"
EMA_WEIGHT = 0.9


def curve_options(available: Sequence[str]) -> list[str]:
    """What the metric key cycles through: each of `CURVES` the run reports, then `all` (when
    more than one); `[reward/mean]` before any data."""
    found = [name for name in CURVES if name in available]
    return found + [ALL] if len(found) > 1 else found or [CURVES[0]]


class CurvesPanel(PlotextPlot):
    """Draws `series[choice]` (or every curve of `series` for `all`). `shown` holds what is drawn:
    {name: [(step, value)]} raw, and `smoothed` {name: EMA values} when smoothing is on."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown: dict[str, list[tuple[float, float]]] = {}
        self.smoothed: dict[str, list[float]] = {}

    def show(self, series: Mapping[str, list[tuple[float, float]]], choice: str, smoothing: bool) -> None:
        names = [n for n in CURVES if n in series] if choice == ALL else [choice]
        self.shown = {name: list(series.get(name, [])) for name in names}
        self.smoothed = {name: ema([y for _, y in points], EMA_WEIGHT)
                         for name, points in self.shown.items()} if smoothing else {}
        smooth = f"EMA {EMA_WEIGHT}" if smoothing else "raw"
        self.border_title = f"curves: {choice}  ·  {smooth}"
        plt = self.plt
        plt.clear_figure()
        columns = 1 if len(names) == 1 else 2 if len(names) <= 4 else 3
        if len(names) > 1:
            plt.subplots((len(names) + columns - 1) // columns, columns)
        for i, name in enumerate(names):
            target = plt.subplot(i // columns + 1, i % columns + 1) if len(names) > 1 else plt
            self._draw_curve(target, name)
        for i in range(len(names), -(-len(names) // columns) * columns if len(names) > 1 else 0):
            plt.subplot(i // columns + 1, i % columns + 1).frame(False)  # a spare cell of the grid: blank
        self.refresh()

    def _draw_curve(self, target, name: str) -> None:
        points = self.shown[name]
        if len(self.shown) > 1:
            target.title(name)
        if not points:
            target.title(f"{name}: no data yet")
            return
        xs = [x for x, _ in points]
        if name in self.smoothed:
            target.plot(xs, [y for _, y in points], color="gray", marker="braille")
            target.plot(xs, self.smoothed[name], color="cyan", marker="braille")
        else:
            target.plot(xs, [y for _, y in points], color="cyan", marker="braille")
        target.xlabel("step")
