"""The dashboard's top line: run, state (running/finished/failed + reason), step k/N, elapsed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

STATUS_STYLE = {"running": "bold green", "finished": "bold cyan", "failed": "bold red", "stopped": "bold yellow",
                "lost": "bold red"}


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class StatusLine(Static):
    """`run  ● status  step k/N  elapsed h:mm:ss` and, on a second line, the reason or error."""

    def show(self, run: str, status: str, reason: str, step: int, total_steps: int | None,
             elapsed_s: float | None, note: str = "") -> None:
        text = Text()
        text.append(run, style="bold")
        text.append("  ● ", style=STATUS_STYLE.get(status, ""))
        text.append(status, style=STATUS_STYLE.get(status, ""))
        text.append(f"  step {step}/{total_steps}" if total_steps else f"  step {step}")
        text.append(f"  elapsed {clock(elapsed_s)}")
        detail = reason or note
        if detail:
            text.append("\n")
            text.append(detail, style="red" if status in ("failed", "lost") or note else "")
        self.update(text)
