"""Every custom message of the TUI, in one place (harlequin keeps them so too). Workers post these
to screens; screens fold them and hand the result to components, which only draw it."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from rlhf_train.telemetry.protocol import Event
from rlhf_train.telemetry.runs import RunSummary


class EventsArrived(Message):
    """A batch of a run's telemetry events, in `seq` order (posted at most every ~100 ms)."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


class StreamEnded(Message):
    """The run's event stream is over: after its `end` event, or its process is gone without one,
    or it could not be read (`error` says why)."""

    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.error = error


class RunsListed(Message):
    """A fresh listing of the runs under the runs root, newest first."""

    def __init__(self, runs: list[RunSummary]) -> None:
        super().__init__()
        self.runs = runs


class LaunchRequested(Message):
    """The preset builder asks to launch the valid preset saved at `preset_path` (the app launches)."""

    def __init__(self, preset_path: Path) -> None:
        super().__init__()
        self.preset_path = preset_path
