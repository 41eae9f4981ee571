"""`rlhf-train watch RUN`: a run's events as text — a live table on a terminal, one line per
event otherwise, raw NDJSON with `--json`. The same view for a running run (socket) and a
finished one (events.jsonl)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table

from rlhf_train.progress import summary
from rlhf_train.telemetry.protocol import Event

THROUGHPUT = (("tok/s", "perf/rollout_tokens_per_s", "{:.0f}"),)
KEY_METRICS = ("reward/mean", "reward/std", "train/kl", "train/policy_loss", "train/critic_loss", "train/entropy",
               "train/clip_frac", "critic/explained_var", "rollout/response_length", "rollout/truncated_frac",
               "perf/rollout_tokens_per_s", "perf/step_s", "time/generate_s", "time/train_s", "time/weight_sync_s")


def fmt(value: object) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class WatchView:
    """What the watcher knows, folded from events in order."""

    run: str = ""
    total_steps: int | None = None
    step: int = 0
    status: str = "running"
    reason: str = ""
    roles: list[str] = field(default_factory=list)
    role_state: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    gpus: list[dict] = field(default_factory=list)
    gpu_reason: str = ""
    dropped: int = 0
    last_sample: dict | None = None

    def apply(self, event: Event) -> None:
        if event.type == "hello":
            self.run = event.get("run", "")
            self.total_steps = event.get("total_steps")
            self.roles = list(event.get("roles") or [])
            self.role_state = {role: "idle" for role in self.roles}
        elif event.type == "metric":
            self.step = event.get("step", self.step)
            self.metrics.update(event.get("values") or {})
        elif event.type == "state":
            self.role_state[event.get("role", "?")] = event.get("to", "?")
        elif event.type == "gpu":
            self.gpus = list(event.get("devices") or [])
            self.gpu_reason = event.get("reason") or ""
        elif event.type == "sample" and event.get("samples"):
            self.last_sample = event.get("samples")[0]
        elif event.type == "log":
            self.dropped += event.dropped
        elif event.type == "end":
            self.status, self.reason = event.get("status", "?"), event.get("reason", "")

    def progress(self) -> str:
        return f"step {self.step}/{self.total_steps}" if self.total_steps else f"step {self.step}"

    def render(self) -> Group:
        head = f"[bold]{self.run}[/]  {self.status}  {self.progress()}" + (f"  ({self.reason})" if self.reason else "")
        metrics = Table("metric", "value", title="latest metrics", title_justify="left")
        for name in KEY_METRICS:
            if name in self.metrics:
                metrics.add_row(name, fmt(self.metrics[name]))
        roles = Table("role", "state", title="roles", title_justify="left")
        for role, state in self.role_state.items():
            roles.add_row(role, state)
        parts: list = [head, metrics, roles]
        if self.gpus:
            gpus = Table("gpu", "name", "memory", "util %", title="GPUs", title_justify="left")
            for d in self.gpus:
                used, total = d.get("used_bytes"), d.get("total_bytes")
                memory = "N/A" if used is None or total is None else f"{used / 2**30:.1f}/{total / 2**30:.1f} GiB"
                gpus.add_row(fmt(d.get("index")), fmt(d.get("name")), memory, fmt(d.get("util_percent")))
            parts.append(gpus)
        elif self.gpu_reason:
            parts.append(f"GPUs: {self.gpu_reason}")
        if self.last_sample:
            s = self.last_sample
            parts.append(f"sample: {s.get('prompt')!r} → {s.get('response')!r}  reward {fmt(s.get('reward'))}")
        if self.dropped:
            parts.append(f"[yellow]{self.dropped} events dropped by the stream (they are in events.jsonl)[/]")
        return Group(*parts)


def plain_line(view: WatchView, event: Event) -> str | None:
    """One line for a log, or None for events the line view leaves out (role states, gpu)."""
    if event.type == "hello":
        return f"run {view.run}: roles {', '.join(view.roles)}; {view.total_steps} steps"
    if event.type == "metric":
        return f"{view.progress()}  {summary(event.get('values') or {}, THROUGHPUT)}"
    if event.type == "log":
        return f"{event.get('level', 'info')}: {event.get('message', '')}"
    if event.type == "end":
        return f"run {event.get('status')}" + (f": {event.get('reason')}" if event.get("reason") else "")
    return None


def watch(events, as_json: bool = False, live: bool | None = None) -> WatchView:
    """Consume `events` (an iterator of `Event`) and show them; returns the final view."""
    view = WatchView()
    if as_json:
        for event in events:
            view.apply(event)
            print(event.encode(), flush=True)
        return view
    if live if live is not None else sys.stdout.isatty():
        from rich.live import Live

        with Live(view.render(), refresh_per_second=4) as screen:
            for event in events:
                view.apply(event)
                screen.update(view.render())
        return view
    for event in events:
        view.apply(event)
        line = plain_line(view, event)
        if line is not None:
            print(line, flush=True)
    return view
