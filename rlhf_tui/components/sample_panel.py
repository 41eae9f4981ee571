"""The latest sample of the run: prompt → response, and its reward."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rlhf_train.telemetry.watch import fmt


class SamplePanel(Static):
    """Draws one `{prompt, response, reward}` triple of a `sample` event."""

    def show(self, sample: dict | None) -> None:
        if not sample:
            self.update(Text("no sample yet", style="dim"))
            return
        text = Text()
        text.append(repr(sample.get("prompt")), style="bold")
        text.append(" → ")
        text.append(repr(sample.get("response")))
        text.append(f"  reward {fmt(sample.get('reward'))}", style="cyan")
        self.update(text)
