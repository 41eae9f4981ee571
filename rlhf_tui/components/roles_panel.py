"""Every role of the run (actor, critic, reference, reward, each engine — whatever `hello` and
`state` events name) with its current state and a timeline of its recent transitions: one column
per state transition of any role (newest on the right), so the roles' columns line up in time,
under a ruler of the step each column happened in.

    ▮ green   working: generating, training
    ▮ cyan    on the GPU, ready: awake, loaded
    ▯ dim     idle
    ▯ yellow  parked: asleep, offloaded (memory freed for the others)
    ? magenta a state this dashboard does not know (drawn, never an error)
"""

from __future__ import annotations

from rich.text import Text

from rlhf_tui.components.sized_static import SizedStatic
from rlhf_tui.dashboard_state import Timeline

STATE_GLYPH = {
    "generating": ("▮", "green"), "training": ("▮", "green"),
    "awake": ("▮", "cyan"), "loaded": ("▮", "cyan"),
    "idle": ("▯", "dim"),
    "asleep": ("▯", "yellow"), "offloaded": ("▯", "yellow"),
}
UNKNOWN = ("?", "magenta")
LEGEND = (("▮", "green", "generating/training"), ("▮", "cyan", "awake/loaded"), ("▯", "dim", "idle"),
          ("▯", "yellow", "asleep/offloaded"), ("?", "magenta", "other"))
ROLE_WIDTH = 10
STATE_WIDTH = 11


def step_ruler(steps: list[int], width: int) -> str:
    """`width` characters: each step's number where its first column is, when it fits after the
    previous label (a space apart)."""
    ruler = [" "] * width
    free_from = 0
    for i, step in enumerate(steps[:width]):
        if i and steps[i - 1] == step:
            continue
        label = str(step)
        if i >= free_from and i + len(label) <= width:
            ruler[i:i + len(label)] = label
            free_from = i + len(label) + 1
    return "".join(ruler)


class RolesPanel(SizedStatic):
    """Draws a `Timeline` and each role's current state (`current`)."""

    def draw(self, width: int, height: int, timeline: Timeline, current: dict[str, str]) -> Text:
        roles = list(dict.fromkeys([*current, *timeline.rows]))
        if not roles:
            return Text("no roles yet", style="dim")
        room = max(0, width - ROLE_WIDTH - STATE_WIDTH - 2)
        steps = timeline.steps[-room:] if room else []
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{'role':<{ROLE_WIDTH}} {'state':<{STATE_WIDTH}} ", style="dim")
        text.append(step_ruler(steps, room) if steps else "no transitions yet" if room else "", style="dim")
        for role in roles:
            state = current.get(role) or (timeline.rows.get(role) or ["idle"])[-1]
            glyph_style = STATE_GLYPH.get(state, UNKNOWN)[1]
            text.append(f"\n{role[:ROLE_WIDTH]:<{ROLE_WIDTH}} ", style="bold")
            text.append(f"{state[:STATE_WIDTH]:<{STATE_WIDTH}} ",
                        style="dim" if glyph_style == "dim" else f"bold {glyph_style}")
            for column_state in timeline.rows.get(role, [])[-room:] if room else []:
                glyph, style = STATE_GLYPH.get(column_state, UNKNOWN)
                text.append(glyph, style=style)
        line = 0
        for glyph, style, meaning in LEGEND:
            item = f"{glyph} {meaning}"
            line = line + 2 + len(item) if line and line + 2 + len(item) <= width else len(item)
            text.append("  " if line > len(item) else "\n")
            text.append(glyph, style=style)
            text.append(f" {meaning}", style="dim")
        return text
