"""Asked on quit while runs this TUI launched are still going: leave them running (the default,
focused), stop them gracefully, or stay. Dismisses with "leave", "stop" or None (stay)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitModal(ModalScreen[str | None]):
    BINDINGS = [Binding("l", "answer('leave')", "Leave running"), Binding("s", "answer('stop')", "Stop them"),
                Binding("escape,c", "answer(None)", "Stay")]

    def __init__(self, running: list[str]) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        names = ", ".join(self.running)
        with Vertical(id="confirm-box"):
            yield Label(f"{len(self.running)} run(s) started here are still running: {names}\n"
                        "Quitting leaves them running; reattach any time with rlhf-tui.", id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("Quit, leave running (l)", variant="primary", id="leave")
                yield Button("Stop them, quit (s)", variant="error", id="stop")
                yield Button("Stay (c)", id="stay")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)
