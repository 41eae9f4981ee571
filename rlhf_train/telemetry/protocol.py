"""The event protocol shared by the trainer, `rlhf-train watch`, the TUI and outside tools
(documented in docs/telemetry.md). Importable without torch.

Every event is one JSON object on one line: `{"v": 1, "seq": 17, "t": 1764000000.0, "type": ..., ...}`.
`seq` increases strictly within a run. Types and their fields:

    hello   run, name, pid, preset, roles, total_steps, devices   (emitted before any model loads)
    metric  step, values: {name: number | null}          (null = not finite)
    gpu     devices: [{index, name, used_bytes, total_bytes, util_percent, mem_util_percent, temperature_c, power_w,
                       processes: [{pid, used_bytes, role}]}], host: {...}, reason,
            [transition: {role, from, to}]   (a sample taken right after a hybrid-engine memory move)
    state   role, from, to                                (e.g. actor loaded→offloaded)
    log     level, message, [dropped, first_dropped_seq]  (dropped: a viewer fell behind)
    sample  step, samples: [{prompt, response, reward}]
    end     status (finished|failed|stopped), reason

Unknown fields are kept (forward compatible); an unknown `type` or a missing envelope field is a
`ProtocolError` for the decoder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
EVENT_TYPES = ("hello", "metric", "gpu", "state", "log", "sample", "end")


class ProtocolError(ValueError):
    """A line that is not a valid event of this protocol version."""


def finite_or_none(values: dict[str, float]) -> dict[str, float | None]:
    """Metric values with NaN/±inf as null: JSON has no NaN, and a diverging loss must still be
    recorded (as missing) rather than crash the run."""
    return {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in values.items()}


def encode_event(seq: int, t: float, type_: str, fields: dict) -> str:
    """One event as a JSON line (no trailing newline). Unknown types are a programming error."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}; known: {', '.join(EVENT_TYPES)}")
    if isinstance(fields.get("values"), dict):
        fields = {**fields, "values": finite_or_none(fields["values"])}
    return json.dumps({"v": PROTOCOL_VERSION, "seq": seq, "t": t, "type": type_, **fields},
                      ensure_ascii=False, allow_nan=False, default=str)


@dataclass(frozen=True)
class Event:
    """A decoded event: the envelope plus the type's own fields in `data`."""

    seq: int
    t: float
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def encode(self) -> str:
        return encode_event(self.seq, self.t, self.type, self.data)

    @property
    def dropped(self) -> int:
        """Events a viewer missed, when this is a drop notice (then `seq` is the last one missed)."""
        return int(self.data.get("dropped", 0)) if self.type == "log" else 0


def decode_event(line: str | bytes) -> Event:
    """Parse one line; `ProtocolError` when it is not an event of this protocol."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("an event is a JSON object")
    missing = [k for k in ("v", "seq", "t", "type") if k not in obj]
    if missing:
        raise ProtocolError(f"missing {', '.join(missing)}")
    if obj["v"] != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {obj['v']!r}; this reader speaks {PROTOCOL_VERSION}")
    if obj["type"] not in EVENT_TYPES:
        raise ProtocolError(f"unknown event type {obj['type']!r}")
    if not isinstance(obj["seq"], int) or isinstance(obj["seq"], bool) or not isinstance(obj["t"], (int, float)):
        raise ProtocolError("seq must be an integer and t a number")
    data = {k: val for k, val in obj.items() if k not in ("v", "seq", "t", "type")}
    return Event(seq=obj["seq"], t=float(obj["t"]), type=obj["type"], data=data, v=obj["v"])


def drop_notice(first_dropped: int, last_dropped: int, t: float) -> str:
    """The line a server sends a viewer in place of the events it had to drop for it."""
    count = last_dropped - first_dropped + 1
    return encode_event(last_dropped, t, "log", {"level": "warning", "message": f"viewer fell behind: {count} "
                        f"events dropped (seq {first_dropped}–{last_dropped}; they are in events.jsonl)",
                        "dropped": count, "first_dropped_seq": first_dropped})


def decode_lines(lines) -> list[Event]:
    """The events among `lines` (str or bytes); blank lines and lines that are not events — a torn
    last line after a crash, garbage — are skipped."""
    events = []
    for line in lines:
        if not line.strip():
            continue
        try:
            events.append(decode_event(line))
        except ProtocolError:
            continue
    return events


def read_events_file(path) -> list[Event]:
    """Every event of an `events.jsonl` (see `decode_lines` for what is skipped)."""
    with open(path, encoding="utf-8") as f:
        return decode_lines(f)
