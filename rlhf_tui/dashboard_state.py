"""What the dashboard knows about one run, folded from its telemetry events in order, in memory
bounded for any run length. Importable without torch; no Textual either (the screen draws it).

    state = DashboardState()
    for event in events:
        state.apply(event)
    state.series["reward/mean"].points()   # ≤ HISTORY_POINTS (step, value) pairs over the whole run
    state.eta_s(), state.timeline(), state.breakdown, state.logs, ...

The latest values (run, step, status, role states, GPU readings, ...) are `WatchView`'s, the same
fold as `rlhf-train watch`; this adds the histories the dashboard draws:

- per metric: a `History` of (step, value) over the whole run, downsampled (see `History`);
- per GPU and for the host: the last `MEMORY_POINTS` memory readings (a rolling window, as nvtop);
- the last `TIMELINE_LEN` role state transitions (`timeline`);
- the last step's time breakdown (`time/<phase>_s` metrics), the last `LOG_LINES` log events and
  the latest sample event;
- seconds per step from the last `ETA_WINDOW` metric events (`seconds_per_step`, `eta_s`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from rlhf_train.telemetry.protocol import Event
from rlhf_train.telemetry.watch import WatchView

HISTORY_POINTS = 512
"""Points kept per metric history."""
MAX_SERIES = 64
"""Metric names with a history; later names keep only their latest value (in `view.metrics`)."""
MEMORY_POINTS = 120
"""GPU/host memory readings kept per device (a rolling window)."""
TIMELINE_LEN = 256
"""Role state transitions kept for the timeline."""
LOG_LINES = 200
"""Log events kept for the log tail."""
ETA_WINDOW = 20
"""Metric events the seconds-per-step estimate looks back over."""
PHASE_ORDER = ("generate", "make_experience", "train", "weight_sync", "offload")
"""Known phases of a step, in the order they happen; other `time/<phase>_s` metrics follow by name."""


class History:
    """A bounded (x, y) series with a downsampling rule that keeps the whole run in view.

    Every kept point is the mean (of x and of y) of `stride` consecutive raw points. `stride`
    starts at 1; when the kept points reach `capacity` they are merged pairwise — points 2i and
    2i+1 become their mean — and `stride` doubles. Raw points that do not fill a bucket yet are
    shown as one more point, their mean, so the latest value is always visible. `points()`
    therefore never holds more than `capacity` points (capacity even, ≥ 2), and the memory is
    O(capacity) however long the run.
    """

    def __init__(self, capacity: int = HISTORY_POINTS) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number ≥ 2, got {capacity}")
        self.capacity = capacity
        self.stride = 1
        self.count = 0
        """Raw points added."""
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._pending = (0.0, 0.0, 0)  # sums of x and y, and how many, of the unfilled bucket

    def add(self, x: float, y: float) -> None:
        sx, sy, n = self._pending
        sx, sy, n = sx + x, sy + y, n + 1
        self.count += 1
        if n < self.stride:
            self._pending = (sx, sy, n)
            return
        self._pending = (0.0, 0.0, 0)
        self._xs.append(sx / n)
        self._ys.append(sy / n)
        if len(self._xs) == self.capacity:
            self._xs = [(a + b) / 2 for a, b in zip(self._xs[::2], self._xs[1::2])]
            self._ys = [(a + b) / 2 for a, b in zip(self._ys[::2], self._ys[1::2])]
            self.stride *= 2

    def points(self) -> list[tuple[float, float]]:
        """The kept points, oldest first, then the unfilled bucket's mean (if any)."""
        out = list(zip(self._xs, self._ys))
        sx, sy, n = self._pending
        if n:
            out.append((sx / n, sy / n))
        return out

    def values(self) -> list[float]:
        return [y for _, y in self.points()]


def ema(values: list[float], weight: float) -> list[float]:
    """Exponential moving average: s₀ = v₀, sᵢ = weight·sᵢ₋₁ + (1 − weight)·vᵢ (TensorBoard's
    smoothing without its debiasing; weight 0 is the raw series)."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else weight * out[-1] + (1 - weight) * v)
    return out


class Transition(NamedTuple):
    step: int
    """The step in progress when it happened (the last metric event's step + 1)."""
    role: str
    state: str


class LogLine(NamedTuple):
    seq: int
    t: float
    level: str
    message: str
    dropped: int
    """> 0 for a drop notice: events this viewer missed."""


@dataclass
class Timeline:
    """The last transitions as columns: `steps[i]` is column i's step, and each row is a role's
    state after each column's transition."""

    steps: list[int]
    rows: dict[str, list[str]]


@dataclass
class DashboardState:
    """The fold. `apply` each event once, in `seq` order."""

    view: WatchView = field(default_factory=WatchView)
    series: dict[str, History] = field(default_factory=dict)
    gpu_memory: dict[int, deque[float]] = field(default_factory=dict)
    """Per device index: used/total of the last readings (readings with a missing value are skipped)."""
    host: dict = field(default_factory=dict)
    """The latest `gpu` event's `host` field."""
    host_memory: deque[float] = field(default_factory=lambda: deque(maxlen=MEMORY_POINTS))
    """Host (total − available)/total of the last readings."""
    transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=TIMELINE_LEN))
    timeline_base: dict[str, str] = field(default_factory=dict)
    """Each role's state before the oldest kept transition."""
    breakdown: list[tuple[str, float]] = field(default_factory=list)
    """The time breakdown of `breakdown_step`: (phase, seconds), in `PHASE_ORDER` then by name."""
    breakdown_step: int | None = None
    logs: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    samples: list[dict] = field(default_factory=list)
    """The latest sample event's samples."""
    sample_step: int | None = None
    step_times: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=ETA_WINDOW))
    """(step, t) of the last metric events."""
    started_t: float | None = None
    last_t: float | None = None
    events: int = 0

    def apply(self, event: Event) -> None:
        self.view.apply(event)
        self.events += 1
        self.started_t = event.t if self.started_t is None else min(self.started_t, event.t)
        self.last_t = event.t
        if event.type == "hello":
            for role in self.view.roles:
                self.timeline_base.setdefault(role, "idle")
        elif event.type == "metric":
            self._metric(event)
        elif event.type == "state":
            self._state(event)
        elif event.type == "gpu":
            self._gpu(event)
        elif event.type == "log":
            self.logs.append(LogLine(event.seq, event.t, str(event.get("level") or "info"),
                                     str(event.get("message") or ""), event.dropped))
        elif event.type == "sample" and event.get("samples"):
            self.samples = list(event.get("samples"))
            self.sample_step = event.get("step")

    def _metric(self, event: Event) -> None:
        step = event.get("step", self.view.step)
        values = event.get("values") or {}
        phases = []
        for name, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            history = self.series.get(name)
            if history is None and len(self.series) < MAX_SERIES:
                history = self.series[name] = History()
            if history is not None:
                history.add(float(step), float(value))
            if name.startswith("time/") and name.endswith("_s"):
                phases.append((name[len("time/"):-len("_s")], float(value)))
        if phases:
            rank = {phase: i for i, phase in enumerate(PHASE_ORDER)}
            self.breakdown = sorted(phases, key=lambda p: (rank.get(p[0], len(PHASE_ORDER)), p[0]))
            self.breakdown_step = step
        if isinstance(step, int):
            self.step_times.append((step, event.t))

    def _state(self, event: Event) -> None:
        role = str(event.get("role") or "?")
        self.timeline_base.setdefault(role, str(event.get("from") or "idle"))
        if len(self.transitions) == self.transitions.maxlen:
            oldest = self.transitions.popleft()
            self.timeline_base[oldest.role] = oldest.state
        self.transitions.append(Transition(self.view.step + 1, role, str(event.get("to") or "?")))

    def _gpu(self, event: Event) -> None:
        for device in self.view.gpus:
            fraction = used_fraction(device.get("used_bytes"), device.get("total_bytes"))
            if fraction is not None and isinstance(device.get("index"), int):
                self.gpu_memory.setdefault(device["index"], deque(maxlen=MEMORY_POINTS)).append(fraction)
        self.host = dict(event.get("host") or {})
        fraction = used_fraction(host_used_bytes(self.host), self.host.get("total_bytes"))
        if fraction is not None:
            self.host_memory.append(fraction)

    # -- derived ---------------------------------------------------------------------------------

    def seconds_per_step(self) -> float | None:
        """(t_last − t_first) / (step_last − step_first) over the last `ETA_WINDOW` metric events;
        with fewer than two (or no step between them), the latest `perf/step_s`; else None."""
        if len(self.step_times) >= 2:
            (s0, t0), (s1, t1) = self.step_times[0], self.step_times[-1]
            if s1 > s0:
                return (t1 - t0) / (s1 - s0)
        step_s = self.view.metrics.get("perf/step_s")
        return float(step_s) if isinstance(step_s, (int, float)) else None

    def eta_s(self) -> float | None:
        """Seconds left: steps left × `seconds_per_step()`, while the run is running and its step
        count is known; None otherwise."""
        total = self.view.total_steps
        per_step = self.seconds_per_step()
        if self.view.status != "running" or not total or per_step is None:
            return None
        return max(0, total - self.view.step) * per_step

    def elapsed_s(self, now: float, ended: bool) -> float | None:
        """From the first event to `now`, or to the last event once the stream has `ended`."""
        if self.started_t is None:
            return None
        return (self.last_t if ended and self.last_t is not None else now) - self.started_t

    def timeline(self) -> Timeline:
        """The kept transitions as columns, every role a row (the roles of `hello` first)."""
        current = dict(self.timeline_base)
        rows: dict[str, list[str]] = {role: [] for role in self.view.role_state}
        for role in current:
            rows.setdefault(role, [])
        steps = []
        for transition in self.transitions:
            current[transition.role] = transition.state
            steps.append(transition.step)
            for role, states in rows.items():
                states.append(current.get(role, "idle"))
        return Timeline(steps, rows)


def host_used_bytes(host: dict) -> float | None:
    """total − available of a `gpu` event's `host` field; None when either is missing."""
    total, available = host.get("total_bytes"), host.get("available_bytes")
    if not isinstance(total, (int, float)) or not isinstance(available, (int, float)):
        return None
    return total - available


def used_fraction(used: object, total: object) -> float | None:
    """used/total clamped to [0, 1]; None when a reading is missing or total is not positive."""
    if not isinstance(used, (int, float)) or not isinstance(total, (int, float)) or total <= 0:
        return None
    return min(1.0, max(0.0, used / total))
