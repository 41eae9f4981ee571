"""The one place events are numbered and written: every event goes to `events.jsonl` (the
record) and to any live sinks (the socket server) in the same order.

Sinks and subscribers run on the emitting thread, under the emitter's lock, after the event is
flushed to the file. They must return at once (queue the line, never touch a socket) and must not
call back into the emitter. `subscribe` makes the file→live switch of a viewer atomic: every event
with `seq <= last_seq` (the value it returns) is already in the file, every later one reaches the
subscriber.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rlhf_train.telemetry.protocol import encode_event

log = logging.getLogger("rlhf_train.telemetry")

Sink = Callable[[str], None]
"""Gets each event line (no trailing newline)."""
Subscriber = Callable[[int, str, str], None]
"""Gets `(seq, type, line)` for each event."""

_ENVELOPE = re.compile(rb'^\{"v": \d+, "seq": (\d+), ')
TAIL_BYTES = 64 * 1024


def last_seq_in(path: Path) -> int:
    """The highest `seq` in an existing events file (0 when there is none): a run continued in
    the same directory keeps numbering after it, so `seq` stays strictly increasing in the file."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            for start in dict.fromkeys((max(0, size - TAIL_BYTES), 0)):  # the tail, else the whole file
                f.seek(start)
                for line in reversed(f.read().splitlines()):
                    match = _ENVELOPE.match(line)
                    if match and line.rstrip().endswith(b"}"):  # a complete event, not a torn write
                        return int(match.group(1))
    except OSError:
        pass
    return 0


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"


class Emitter:
    def __init__(self, events_path: Path):
        self.path = Path(events_path)
        self._seq = last_seq_in(self.path)
        self._file = self.path.open("a", encoding="utf-8")
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            self._file.write("\n")  # a torn last line (crash mid-write) stays a line of its own
        self._lock = threading.Lock()
        self.sinks: list[Sink] = []
        self._subscribers: list[Subscriber] = []
        self.hello_seq: int | None = None
        self.hello_line: str | None = None

    @property
    def last_seq(self) -> int:
        """The `seq` of the newest event written (0 before the first)."""
        return self._seq

    def emit(self, type_: str, **fields) -> int:
        """Write one event; returns its sequence number."""
        with self._lock:
            self._seq += 1
            line = encode_event(self._seq, time.time(), type_, fields)
            self._file.write(line + "\n")
            self._file.flush()
            if type_ == "hello" and self.hello_line is None:
                self.hello_seq, self.hello_line = self._seq, line
            for sink in self.sinks:
                try:
                    sink(line)
                except Exception:  # noqa: BLE001 - a broken viewer must not stop training
                    log.exception("telemetry sink %r failed on event %d", sink, self._seq)
            for subscriber in self._subscribers:
                try:
                    subscriber(self._seq, type_, line)
                except Exception:  # noqa: BLE001
                    log.exception("telemetry subscriber %r failed on event %d", subscriber, self._seq)
            return self._seq

    def subscribe(self, subscriber: Subscriber) -> int:
        """Start calling `subscriber(seq, type, line)` for every later event; returns `last_seq` at
        that instant (events up to it are in the file, later ones go to the subscriber)."""
        with self._lock:
            self._subscribers.append(subscriber)
            return self._seq

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            try:
                self._subscribers.remove(subscriber)
            except ValueError:
                pass

    def close(self) -> None:
        with self._lock:
            self._file.close()
