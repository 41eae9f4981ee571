"""The latest sample event of the run: its step, and each prompt → response with its reward."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rlhf_train.telemetry.watch import fmt


class SamplePanel(Static):
    """Draws the `{prompt, response, reward}` triples of one `sample` event, one per line."""

    def show(self, samples: list[dict], step: int | None) -> None:
        self.border_subtitle = "" if step is None else f"step {step}"
        if not samples:
            self.update(Text("no sample yet", style="dim"))
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, sample in enumerate(samples):
            if i:
                text.append("\n")
            text.append(f"{fmt(sample.get('reward')):>6} ", style="cyan")
            text.append(repr(sample.get("prompt")), style="bold")
            text.append(" → ")
            text.append(repr(sample.get("response")))
        self.update(text)
