"""One run's dashboard, fed only by its telemetry events (live from the socket, or replayed from
events.jsonl). A worker thread reads the events and posts them in batches — every `BATCH_S`, at
most `MAX_BATCH` at a time, the next batch only once the screen has folded the last one, so a
fast stream meets back-pressure (a live socket then drops for this viewer, with a notice) rather
than an unbounded queue. The screen folds them into a `DashboardState` and hands the result to
the components.

Layout: on a large terminal (≥ `WIDE` columns and ≥ `TALL` rows) every panel is shown; on a
smaller one the panels are grouped into `PAGES`, one page at a time, picked with 1–4.
Keys: m / M next / previous curve, e smoothing on/off, 1–4 page, s stop the run (see `stopping`:
a confirm, then the graceful request; pressed again while it still runs, a confirm to force it),
escape back to the runs."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import get_current_worker

from rlhf_train.errors import RunError
from rlhf_train.telemetry.client import iter_events
from rlhf_train.telemetry.protocol import Event
from rlhf_train.telemetry.watch import WatchView
from rlhf_tui.components.curves_panel import CurvesPanel, curve_options
from rlhf_tui.components.gpu_panel import GpuPanel
from rlhf_tui.components.log_panel import LogPanel
from rlhf_tui.components.metrics_panel import MetricsPanel
from rlhf_tui.components.page_bar import PageBar
from rlhf_tui.components.roles_panel import RolesPanel
from rlhf_tui.components.sample_panel import SamplePanel
from rlhf_tui.components.status_line import StatusLine
from rlhf_tui.components.throughput_panel import ThroughputPanel
from rlhf_tui.dashboard_state import DashboardState
from rlhf_tui.messages import EventsArrived, StreamEnded
from rlhf_tui.stopping import ask_to_stop

BATCH_S = 0.1
"""Events are posted to the screen at most this often (keeps ≥1,000 events/s smooth)."""
MAX_BATCH = 2000
"""At most this many events per batch, so that one fold never freezes the screen."""
INBOX = 10_000
"""Events read ahead of the screen at most (the reader waits beyond that)."""
CURVES_EVERY_S = 0.5
"""The plot is rebuilt at most this often (plotext takes ~20 ms a plot)."""
WIDE, TALL = 120, 36
"""The smallest terminal that shows every panel at once."""
PAGES = (("curves", ("curves-panel", "throughput-panel")), ("memory", ("gpu-panel",)),
         ("roles", ("roles-panel", "metrics-panel")), ("log", ("sample-panel", "log-panel")))
"""The compact layout's pages: a name and the panels it shows."""
_DONE = object()

EventSource = Callable[[], Iterable[Event]]


class DashboardScreen(Screen):
    CSS_PATH = "dashboard.tcss"
    BINDINGS = [Binding("escape", "app.pop_screen", "Runs"),
                Binding("m", "cycle_curve(1)", "Curve"), Binding("M", "cycle_curve(-1)", "Previous curve", show=False),
                Binding("e", "toggle_smoothing", "Smooth"), Binding("s", "stop_run", "Stop run"),
                *(Binding(str(i + 1), f"page({i})", name, show=False) for i, (name, _) in enumerate(PAGES))]

    def __init__(self, run_dir: str | Path, source: EventSource | None = None) -> None:
        """`source`: where the events come from (default: `iter_events(run_dir)`, live or replayed)."""
        super().__init__()
        self.run_dir = Path(run_dir)
        self.source: EventSource = source or (lambda: iter_events(self.run_dir))
        self.state = DashboardState()
        self.ended = False
        self.note = ""
        self.page = 0
        self.curve = "reward/mean"
        self.smoothing = True
        self.curves_dirty = True
        self._absorbed = threading.Event()
        self._absorbed.set()

    @property
    def view(self) -> WatchView:
        return self.state.view

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status-line")
        yield PageBar(id="page-bar")
        with Horizontal(id="dash-body"):
            with Vertical(id="dash-left"):
                yield CurvesPanel(id="curves-panel", classes="panel")
                yield ThroughputPanel(id="throughput-panel", classes="panel")
            with Vertical(id="dash-right"):
                yield GpuPanel(id="gpu-panel", classes="panel")
                yield RolesPanel(id="roles-panel", classes="panel")
                yield MetricsPanel(id="metrics-panel", classes="panel")
        with Horizontal(id="dash-bottom"):
            yield SamplePanel(id="sample-panel", classes="panel")
            yield LogPanel(id="log-panel", classes="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for selector, title in (("#throughput-panel", "throughput"), ("#gpu-panel", "GPU & host memory"),
                                ("#roles-panel", "roles: state and recent transitions"),
                                ("#metrics-panel", "latest metrics"), ("#sample-panel", "latest sample"),
                                ("#log-panel", "log")):
            self.query_one(selector).border_title = title
        self.apply_layout()
        self.redraw()
        self.redraw_curves()
        self.set_interval(1.0, self.redraw_status)
        self.set_interval(CURVES_EVERY_S, self.redraw_curves)
        self.stream_events()

    # -- the worker: events in, batched messages out -------------------------------------------

    @work(thread=True, exclusive=True, group="events")
    def stream_events(self) -> None:
        worker = get_current_worker()
        inbox: queue.Queue = queue.Queue(maxsize=INBOX)
        stop = threading.Event()

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    inbox.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def read() -> None:
            try:
                for event in self.source():
                    put(event)
                    if stop.is_set():
                        return
                put(_DONE)
            except RunError as exc:
                put(StreamEnded(str(exc)))
            except Exception as exc:  # noqa: BLE001 - shown on the status line, never a traceback
                put(StreamEnded(f"cannot read the run's events: {exc}"))

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
                final = item is not None and not isinstance(item, Event)
                if batch and (final or len(batch) >= MAX_BATCH or time.monotonic() >= next_post):
                    while not self._absorbed.wait(0.1):  # one batch in flight at most
                        if worker.is_cancelled:
                            return
                    self._absorbed.clear()
                    self.post_message(EventsArrived(batch))
                    batch = []
                    next_post = time.monotonic() + BATCH_S
                elif time.monotonic() >= next_post:
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
        try:
            for event in message.events:
                self.state.apply(event)
                if event.type == "end":
                    self.ended = True
            self.redraw()
        finally:
            self._absorbed.set()

    @on(StreamEnded)
    def stream_ended(self, message: StreamEnded) -> None:
        if message.error:
            self.note = message.error
        elif not self.ended:
            self.note = "the run's process is gone without an end event"
        self.ended = True
        self.redraw_status()
        self.redraw_curves()

    # -- keys and layout -------------------------------------------------------------------------

    def action_cycle_curve(self, by: int) -> None:
        options = curve_options(list(self.state.series))
        at = options.index(self.curve) if self.curve in options else -by
        self.curve = options[(at + by) % len(options)]
        self.curves_dirty = True
        self.redraw_curves()

    def action_toggle_smoothing(self) -> None:
        self.smoothing = not self.smoothing
        self.curves_dirty = True
        self.redraw_curves()

    def action_stop_run(self) -> None:
        ask_to_stop(self.app, self.run_dir, self.app.stop_asked)

    def action_page(self, index: int) -> None:
        self.page = index
        self.apply_layout()

    def on_resize(self, event: Resize) -> None:
        self.apply_layout()

    @property
    def compact(self) -> bool:
        return self.size.width < WIDE or self.size.height < TALL

    def apply_layout(self) -> None:
        """Every panel on a large terminal; only the current page's panels (and the containers
        holding them) on a small one."""
        compact = self.compact
        self.set_class(compact, "-compact")
        shown = set(PAGES[self.page][1])
        for panel in self.query(".panel"):
            panel.set_class(compact and panel.id not in shown, "-off-page")
        for container in self.query("#dash-body, #dash-left, #dash-right, #dash-bottom"):
            on_page = any(panel.id in shown for panel in container.query(".panel"))
            container.set_class(compact and not on_page, "-off-page")
        self.query_one(PageBar).show([name for name, _ in PAGES], self.page)

    # -- drawing ---------------------------------------------------------------------------------

    def redraw_status(self) -> None:
        s, v = self.state, self.state.view
        self.query_one(StatusLine).show(v.run or self.run_dir.name, v.status, v.reason, v.step, v.total_steps,
                                        s.elapsed_s(time.time(), self.ended), s.eta_s(), s.seconds_per_step(),
                                        self.note)

    def redraw_curves(self) -> None:
        if not self.curves_dirty:
            return
        self.curves_dirty = False
        series = {name: history.points() for name, history in self.state.series.items()}
        self.query_one(CurvesPanel).show(series, self.curve, self.smoothing)

    def redraw(self) -> None:
        s, v = self.state, self.state.view
        self.redraw_status()
        self.query_one(MetricsPanel).show(v.metrics)
        self.query_one(GpuPanel).show(v.gpus, v.gpu_reason, s.gpu_memory, s.host, s.host_memory)
        self.query_one(RolesPanel).show(s.timeline(), v.role_state)
        tokens = s.series.get("perf/rollout_tokens_per_s")
        self.query_one(ThroughputPanel).show(tokens.values() if tokens else [], s.breakdown, s.breakdown_step)
        self.query_one(SamplePanel).show(s.samples, s.sample_step)
        self.query_one(LogPanel).show(s.logs, v.dropped)
        self.curves_dirty = True
