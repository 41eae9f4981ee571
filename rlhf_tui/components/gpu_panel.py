"""GPU memory per device (bar + used/total GiB, coloured by pressure), or "no GPU: <reason>".
Any reading may be missing: it is drawn as N/A, never a crash."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

GIB = 2**30
BAR_WIDTH = 10


def pressure_style(fraction: float) -> str:
    return "red" if fraction >= 0.9 else "yellow" if fraction >= 0.7 else "green"


def memory_line(device: dict) -> Text:
    """`█████░░░░░ 12.0/80.0 GiB` for one device of a `gpu` event."""
    used, total = device.get("used_bytes"), device.get("total_bytes")
    line = Text()
    if not isinstance(used, (int, float)) or not isinstance(total, (int, float)) or total <= 0:
        line.append("░" * BAR_WIDTH, style="dim")
        line.append(" N/A GiB")
        return line
    fraction = min(1.0, max(0.0, used / total))
    filled = round(fraction * BAR_WIDTH)
    line.append("█" * filled, style=pressure_style(fraction))
    line.append("░" * (BAR_WIDTH - filled), style="dim")
    line.append(f" {used / GIB:.1f}/{total / GIB:.1f} GiB")
    return line


class GpuPanel(Static):
    """Draws the devices of the latest `gpu` event (`devices`, and `reason` when there are none)."""

    def show(self, devices: list[dict], reason: str) -> None:
        if not devices:
            self.update(Text(f"no GPU: {reason}" if reason else "no GPU readings yet", style="dim" if not reason else ""))
            return
        text = Text()
        for i, device in enumerate(devices):
            if i:
                text.append("\n")
            index = device.get("index")
            util = device.get("util_percent")
            text.append(f"{'?' if index is None else index} ", style="bold")
            text.append(str(device.get("name") or "N/A"), style="dim")
            text.append(f"  util {'N/A' if util is None else f'{util:.0f}%'}\n")
            text.append_text(memory_line(device))
        self.update(text)
