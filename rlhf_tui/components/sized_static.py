"""A Static whose drawing depends on its size (bars, timelines, tails): it keeps what it was last
shown and draws it again when resized."""

from __future__ import annotations

from typing import Any

from textual.events import Resize
from textual.widgets import Static


class SizedStatic(Static):
    """Subclasses implement `draw(width, height, *args)`; callers call `show(*args)`. `width` and
    `height` are the content size (`fallback` before the first layout)."""

    fallback = (76, 10)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple | None = None

    def show(self, *args: Any) -> None:
        self._shown = args
        width, height = self.content_size
        self.update(self.draw(width or self.fallback[0], height or self.fallback[1], *args))

    def on_resize(self, event: Resize) -> None:
        if self._shown is not None:
            self.show(*self._shown)

    def draw(self, width: int, height: int, *args: Any):
        raise NotImplementedError
