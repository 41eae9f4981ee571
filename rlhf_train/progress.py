"""Headless progress: a rich bar (step, reward, KL, loss, s/step, ETA) on a terminal, one plain
line per step otherwise (logs, CI, `nohup`)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

SHOWN = (("reward", "reward/mean", "{:.3f}"), ("kl", "train/kl", "{:.4f}"), ("loss", "train/policy_loss", "{:+.4f}"),
         ("s/step", "perf/step_s", "{:.2f}"))


def summary(metrics: dict[str, float | None], extra: tuple = ()) -> str:
    """`reward 0.412  kl 0.0213  loss -0.0110  s/step 0.45` from a metric dict (N/A for null)."""
    return "  ".join(f"{label} {'N/A' if metrics[key] is None else fmt.format(metrics[key])}"
                     for label, key, fmt in SHOWN + extra if key in metrics)


def _eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class StepProgress:
    """`start`, then `advance(step, metrics)` after every step, then `close`."""

    def __init__(self, total: int, title: str, tty: bool | None = None):
        self.total = total
        self.title = title
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._bar: Progress | None = None
        self._task = None

    def start(self) -> None:
        if self.tty:
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[summary]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task(self.title, total=self.total, summary="")
            self._bar.start()

    def advance(self, step: int, metrics: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, summary=summary(metrics))
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / step * (self.total - step)
        print(f"step {step}/{self.total}  {summary(metrics)}  ETA {_eta(eta)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
