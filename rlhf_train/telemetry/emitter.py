"""The one place events are numbered and written: every event goes to `events.jsonl` (the
record) and to any live sinks (the socket server, later) in the same order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from rlhf_train.telemetry.protocol import encode_event

Sink = Callable[[str], None]


class Emitter:
    def __init__(self, events_path: Path):
        self._file = events_path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0
        self.sinks: list[Sink] = []

    def emit(self, type_: str, **fields) -> int:
        """Write one event; returns its sequence number."""
        with self._lock:
            self._seq += 1
            line = encode_event(self._seq, time.time(), type_, fields)
            self._file.write(line + "\n")
            self._file.flush()
            for sink in self.sinks:
                sink(line)
            return self._seq

    def close(self) -> None:
        with self._lock:
            self._file.close()
