"""The page picker of the compact dashboard (small terminals show one page of panels at a time):
`1 curves  2 memory  ...` with the current page highlighted."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static


class PageBar(Static):
    """Draws page names numbered from 1, `current` (an index) highlighted."""

    def show(self, pages: Sequence[str], current: int) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, page in enumerate(pages):
            text.append(f" {i + 1} {page} ", style="reverse bold" if i == current else "dim")
            text.append(" ")
        self.update(text)
