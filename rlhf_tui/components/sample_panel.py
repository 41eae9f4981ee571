"""The latest sample event of the run: its step, and each prompt → response with its reward."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from rlhf_train.telemetry.watch import fmt
from rlhf_tui.components.sized_static import SizedStatic

REWARD_WIDTH = 6


class SamplePanel(SizedStatic):
    """Draws the `{prompt, response, reward}` triples of one `sample` event: `reward 'prompt' →
    'response'` on one line when it fits the width; otherwise the prompt on one line and `→
    'response'` under it (each cut with …), so a long prompt never hides the response — as long as
    the panel is tall enough for that, else one line each."""

    def draw(self, width: int, height: int, samples: list[dict], step: int | None) -> Text:
        self.border_subtitle = "" if step is None else f"step {step}"
        if not samples:
            return Text("no sample yet", style="dim")
        lines = [(f"{fmt(s.get('reward')):>{REWARD_WIDTH}} ", repr(s.get("prompt")), repr(s.get("response")))
                 for s in samples]
        long = [cell_len(reward + prompt + response) + 3 > width for reward, prompt, response in lines]
        split = len(lines) + sum(long) <= height
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, ((reward, prompt, response), too_long) in enumerate(zip(lines, long)):
            if i:
                text.append("\n")
            text.append(reward, style="cyan")
            text.append(prompt, style="bold")
            text.append("\n" + " " * len(reward) + "→ " if split and too_long else " → ")
            text.append(response)
        return text
