"""The tail of the run's log events, one per line, coloured by level; drop notices (a viewer
that fell behind) stand out."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text

from rlhf_tui.components.sized_static import SizedStatic
from rlhf_tui.dashboard_state import LogLine

LEVEL_STYLE = {"debug": "dim", "info": "green", "warning": "yellow", "error": "bold red", "critical": "bold red"}


class LogPanel(SizedStatic):
    """Draws the newest log lines that fit, oldest first: `hh:mm:ss level message`; unknown
    levels in magenta. The subtitle counts events the stream dropped."""

    def draw(self, width: int, height: int, lines: Sequence[LogLine], dropped: int) -> Text:
        self.border_subtitle = f"{dropped} events dropped (they are in events.jsonl)" if dropped else ""
        tail = list(lines)[-max(1, height):]
        if not tail:
            return Text("no log events yet", style="dim")
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(tail):
            if i:
                text.append("\n")
            level_style = "bold yellow" if line.dropped else LEVEL_STYLE.get(line.level.lower(), "magenta")
            text.append(time.strftime("%H:%M:%S ", time.localtime(line.t)), style="dim")
            text.append(f"{line.level:<7} ", style=level_style)
            text.append(("⚠ " if line.dropped else "") + line.message,
                        style=level_style if line.level.lower() != "info" else "")
        return text
