"""One run's dashboard, fed only by its telemetry events (live from the socket, or replayed from
events.jsonl). A worker thread reads `iter_events` and posts the events in batches; the screen folds
them with the same fold as `rlhf-train watch` (`WatchView`) and hands the result to the components."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import get_current_worker

from rlhf_train.errors import RunError
from rlhf_train.telemetry.client import iter_events
from rlhf_train.telemetry.protocol import Event
from rlhf_train.telemetry.watch import WatchView
from rlhf_tui.components.gpu_panel import GpuPanel
from rlhf_tui.components.metrics_panel import MetricsPanel
from rlhf_tui.components.reward_sparkline import RewardSparkline
from rlhf_tui.components.roles_panel import RolesPanel
from rlhf_tui.components.sample_panel import SamplePanel
from rlhf_tui.components.status_line import StatusLine
from rlhf_tui.messages import EventsArrived, StreamEnded

BATCH_S = 0.1
"""Events are posted to the screen at most this often (keeps ≥1,000 events/s smooth)."""
REWARD_HISTORY = 500
"""How many `reward/mean` values the sparkline keeps (memory stays bounded on long runs)."""
_DONE = object()


class DashboardScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Runs")]

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.view = WatchView()
        self.rewards: deque[float] = deque(maxlen=REWARD_HISTORY)
        self.started_t: float | None = None
        self.last_t: float | None = None
        self.ended = False
        self.note = ""

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status-line")
        with Horizontal(id="dash-top"):
            yield MetricsPanel(id="metrics-panel")
            with Vertical(id="dash-right"):
                yield RolesPanel(id="roles-panel")
                yield GpuPanel(id="gpu-panel")
        yield RewardSparkline([], id="reward-sparkline")
        yield SamplePanel(id="sample-panel")
        yield Footer()

    def on_mount(self) -> None:
        for selector, title in (("#metrics-panel", "metrics"), ("#roles-panel", "roles"), ("#gpu-panel", "GPU"),
                                ("#sample-panel", "latest sample")):
            self.query_one(selector).border_title = title
        self.redraw()
        self.set_interval(1.0, self.redraw_status)
        self.stream_events()

    # -- the worker: events in, batched messages out -------------------------------------------

    @work(thread=True, exclusive=True, group="events")
    def stream_events(self) -> None:
        worker = get_current_worker()
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()

        def read() -> None:
            try:
                for event in iter_events(self.run_dir):
                    inbox.put(event)
                    if stop.is_set():
                        return
                inbox.put(_DONE)
            except RunError as exc:
                inbox.put(StreamEnded(str(exc)))
            except Exception as exc:  # noqa: BLE001 - shown on the status line, never a traceback
                inbox.put(StreamEnded(f"cannot read the run's events: {exc}"))

        threading.Thread(target=read, name=f"events {self.run_dir.name}", daemon=True).start()
        batch: list[Event] = []
        next_post = time.monotonic() + BATCH_S
        try:
            while not worker.is_cancelled:
                try:
                    item = inbox.get(timeout=max(0.0, next_post - time.monotonic()))
                except queue.Empty:
                    item = None
                if isinstance(item, Event):
                    batch.append(item)
                if batch and (item is not None and not isinstance(item, Event) or time.monotonic() >= next_post):
                    self.post_message(EventsArrived(batch))
                    batch = []
                if time.monotonic() >= next_post:
                    next_post = time.monotonic() + BATCH_S
                if item is _DONE:
                    self.post_message(StreamEnded())
                    return
                if isinstance(item, StreamEnded):
                    self.post_message(item)
                    return
        finally:
            stop.set()

    # -- folding ---------------------------------------------------------------------------------

    @on(EventsArrived)
    def fold(self, message: EventsArrived) -> None:
        for event in message.events:
            self.view.apply(event)
            if self.started_t is None or event.type == "hello":
                self.started_t = event.t if self.started_t is None else min(self.started_t, event.t)
            self.last_t = event.t
            if event.type == "metric":
                reward = (event.get("values") or {}).get("reward/mean")
                if isinstance(reward, (int, float)):
                    self.rewards.append(float(reward))
            elif event.type == "end":
                self.ended = True
        self.redraw()

    @on(StreamEnded)
    def stream_ended(self, message: StreamEnded) -> None:
        if message.error:
            self.note = message.error
        elif not self.ended:
            self.note = "the run's process is gone without an end event"
        self.ended = True
        self.redraw_status()

    # -- drawing ---------------------------------------------------------------------------------

    def elapsed_s(self) -> float | None:
        if self.started_t is None:
            return None
        return (self.last_t if self.ended and self.last_t else time.time()) - self.started_t

    def redraw_status(self) -> None:
        v = self.view
        self.query_one(StatusLine).show(v.run or self.run_dir.name, v.status, v.reason,
                                        v.step, v.total_steps, self.elapsed_s(), self.note)

    def redraw(self) -> None:
        v = self.view
        self.redraw_status()
        self.query_one(MetricsPanel).show(v.metrics)
        self.query_one(RolesPanel).show(v.role_state)
        self.query_one(GpuPanel).show(v.gpus, v.gpu_reason)
        self.query_one(RewardSparkline).show(self.rewards)
        self.query_one(SamplePanel).show(v.last_sample)
