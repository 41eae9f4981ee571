"""GPU memory per device and host RAM, as `gpu` events report them: a bar of used/total coloured
by pressure, a sparkline of the recent readings, utilisation, and the memory of each process
labelled with its role. Without a GPU it says so plainly ("no GPU: <reason>"), and host RAM —
where offloaded states live — is drawn either way. A missing reading is drawn as N/A, never a crash."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text

from rlhf_tui.components.sized_static import SizedStatic
from rlhf_tui.dashboard_state import host_used_bytes, used_fraction

GIB = 2**30
MIB = 2**20
BAR_WIDTH = 10
SPARK = "▁▂▃▄▅▆▇█"


def pressure_style(fraction: float) -> str:
    """green below 70 % used, yellow below 90 %, red from 90 %."""
    return "red" if fraction >= 0.9 else "yellow" if fraction >= 0.7 else "green"


def size(num_bytes: object) -> str:
    """`12.0 GiB`, `38.7 MiB` under 1 GiB, or `N/A`."""
    if not isinstance(num_bytes, (int, float)):
        return "N/A"
    return f"{num_bytes / GIB:.1f} GiB" if num_bytes >= GIB else f"{num_bytes / MIB:.1f} MiB"


def spark(fractions: Sequence[float], width: int) -> str:
    """The last `width` fractions (0..1, an absolute scale) as block characters."""
    if width <= 0:
        return ""
    top = len(SPARK) - 1
    return "".join(SPARK[round(min(1.0, max(0.0, f)) * top)] for f in list(fractions)[-width:])


def memory_line(used: object, total: object, history: Sequence[float], width: int) -> Text:
    """`█████░░░░░ 12.0/80.0 GiB  15%  ▁▂▃▅` — the bar, used/total, and the history in what is left
    of `width`."""
    line = Text()
    fraction = used_fraction(used, total)
    if fraction is None:
        line.append("░" * BAR_WIDTH, style="dim")
        line.append(" N/A GiB")
        return line
    style = pressure_style(fraction)
    filled = round(fraction * BAR_WIDTH)
    line.append("█" * filled, style=style)
    line.append("░" * (BAR_WIDTH - filled), style="dim")
    line.append(f" {used / GIB:.1f}/{total / GIB:.1f} GiB {fraction:4.0%}")
    room = width - line.cell_len - 2
    if history and room > 0:
        line.append("  ")
        line.append(spark(history, room), style=style)
    return line


def processes_line(processes: object, amount_key: str) -> Text:
    """`actor 8.0 GiB · pid 77 1.0 GiB` (a process without a role is not ours: named by pid)."""
    line = Text("  ")
    if processes is None:
        line.append("processes: N/A", style="dim")
        return line
    for i, proc in enumerate(processes if isinstance(processes, list) else []):
        if i:
            line.append(" · ", style="dim")
        role = proc.get("role")
        line.append(str(role) if role else f"pid {proc.get('pid')}", style="bold" if role else "dim")
        line.append(f" {size(proc.get(amount_key))}")
    return line


class GpuPanel(SizedStatic):
    """Draws the latest `devices` and `host` of a `gpu` event with each device's (and the host's)
    recent used fractions."""

    def draw(self, width: int, height: int, devices: list[dict], reason: str, history: Mapping[int, Sequence[float]],
             host: dict, host_history: Sequence[float]) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if devices:
            for i, device in enumerate(devices):
                if i:
                    text.append("\n")
                index = device.get("index")
                text.append(f"GPU {'?' if index is None else index} ", style="bold")
                text.append(str(device.get("name") or "N/A"), style="dim")
                util = device.get("util_percent")
                text.append(f"  util {'N/A' if util is None else f'{util:.0f}%'}")
                for key, unit in (("temperature_c", "°C"), ("power_w", " W")):
                    if isinstance(device.get(key), (int, float)):
                        text.append(f"  {device[key]:.0f}{unit}", style="dim")
                text.append("\n")
                text.append_text(memory_line(device.get("used_bytes"), device.get("total_bytes"),
                                             history.get(index, ()), width))
                if device.get("processes") != []:
                    text.append("\n")
                    text.append_text(processes_line(device.get("processes"), "used_bytes"))
        else:
            text.append(f"no GPU: {reason}" if reason else "no GPU readings yet", style="" if reason else "dim")
        if host:
            text.append("\nhost RAM", style="bold")
            text.append("  (offloaded states live here)\n" if devices else "\n", style="dim")
            text.append_text(memory_line(host_used_bytes(host), host.get("total_bytes"), host_history, width))
            if host.get("processes"):
                text.append("\n")
                text.append_text(processes_line(host.get("processes"), "rss_bytes"))
        return text
