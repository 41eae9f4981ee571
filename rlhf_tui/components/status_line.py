"""The dashboard's top line: run, state (running/finished/failed/stopped + reason), step k/N,
seconds per step, ETA and elapsed time."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

STATUS_STYLE = {"running": "bold green", "finished": "bold cyan", "failed": "bold red", "stopped": "bold yellow",
                "lost": "bold red"}


def clock(seconds: float | None) -> str:
    """`h:mm:ss`, or `-` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class StatusLine(Static):
    """`run  ● status  step k/N  0.10 s/step  ETA h:mm:ss  elapsed h:mm:ss` and, on a second
    line, the end reason or an error note."""

    def show(self, run: str, status: str, reason: str, step: int, total_steps: int | None,
             elapsed_s: float | None, eta_s: float | None = None, seconds_per_step: float | None = None,
             note: str = "") -> None:
        style = STATUS_STYLE.get(status, "")
        text = Text()
        text.append(run, style="bold")
        text.append("  ● ", style=style)
        text.append(status, style=style)
        text.append(f"  step {step}/{total_steps}" if total_steps else f"  step {step}")
        if seconds_per_step is not None:
            text.append(f"  {seconds_per_step:.2f} s/step", style="dim")
        if eta_s is not None:
            text.append(f"  ETA {clock(eta_s)}")
        text.append(f"  elapsed {clock(elapsed_s)}")
        detail = reason or note
        if detail:
            text.append("\n")
            text.append(detail, style="red" if status in ("failed", "lost") or note else "yellow")
        self.update(text)
