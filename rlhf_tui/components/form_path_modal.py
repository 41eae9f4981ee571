"""Ask for a file path over the current screen; dismisses with the `Path` entered (enter), or None
(escape). `~` is expanded; an empty answer is refused on the spot."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PathModal(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PathModal {
        align: center middle;
    }
    #path-box {
        width: 70;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    #path-hint {
        color: $text-muted;
    }
    """

    def __init__(self, title: str, initial: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.initial = initial

    def compose(self) -> ComposeResult:
        with Vertical(id="path-box"):
            yield Label(self.title_text, id="path-title")
            yield Input(self.initial, placeholder="path/to/preset.toml", id="path-input")
            yield Label("enter: OK · escape: cancel", id="path-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.notify("enter a path, or escape to cancel", severity="warning")
            return
        self.dismiss(Path(text).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)
