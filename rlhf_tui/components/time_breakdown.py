"""Where the last step's time went: one stacked bar of its `time/<phase>_s` metrics (generate,
make_experience, train, weight_sync, and any other phase, e.g. a future offload) and a legend
with each phase's seconds and share."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from rlhf_tui.components.sized_static import SizedStatic

PHASE_STYLE = {"generate": "green", "make_experience": "blue", "train": "magenta", "weight_sync": "yellow",
               "offload": "cyan"}
SPARE_STYLES = ("red", "bright_blue", "bright_green", "bright_magenta", "white")
"""Colours of phases without their own, in the order they appear."""


def split_cells(seconds: Sequence[float], width: int) -> list[int]:
    """Cells of a `width`-wide bar per part, proportional to `seconds` and summing to `width`
    (largest remainder; ties go to the earlier part). All zeros when nothing took time."""
    total = sum(max(0.0, s) for s in seconds)
    if total <= 0 or width <= 0:
        return [0] * len(seconds)
    exact = [max(0.0, s) / total * width for s in seconds]
    cells = [int(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - cells[i]), i))
    for i in by_remainder[:width - sum(cells)]:
        cells[i] += 1
    return cells


def seconds(value: float) -> str:
    """`1.234 s`, or `0.24 ms` under 10 ms."""
    return f"{value:.3f} s" if value >= 0.01 else f"{value * 1000:.2f} ms"


def phase_styles(phases: Sequence[str]) -> list[str]:
    spare = iter(SPARE_STYLES * (1 + len(phases) // len(SPARE_STYLES)))
    return [PHASE_STYLE.get(phase) or next(spare) for phase in phases]


class TimeBreakdown(SizedStatic):
    """Draws `[(phase, seconds)]` of step `step`: the bar, then the legend (wrapped to the width)."""

    def draw(self, width: int, height: int, breakdown: Sequence[tuple[str, float]], step: int | None) -> Text:
        if not breakdown:
            return Text("no time/*_s metrics yet", style="dim")
        phases, times = zip(*breakdown)
        styles = phase_styles(phases)
        total = sum(max(0.0, s) for s in times)
        text = Text()
        text.append(f"step {step}: {seconds(total)}  ", style="bold")
        bar_width = max(0, width - text.cell_len)
        for cells, style in zip(split_cells(times, bar_width), styles):
            text.append("█" * cells, style=style)
        line = width
        for phase, secs, style in zip(phases, times, styles):
            share = f" ({secs / total:.0%})" if total > 0 else ""
            item = f"■ {phase} {seconds(secs)}{share}"
            fits = line + 2 + len(item) <= width
            text.append("  " if fits else "\n")
            line = line + 2 + len(item) if fits else len(item)
            text.append("■", style=style)
            text.append(item[1:], style="dim")
        return text
