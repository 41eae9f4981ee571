"""The event schema shared by the trainer, `rlhf-train watch` and the TUI.

One JSON object per line: `{"v": 1, "seq": 17, "t": 1764000000.0, "type": "...", ...}`. Types:
`hello` (run info, preset, roles), `metric` (`step`, `values: {name: number}`), `gpu`, `state`
(role, from, to), `log`, `sample` (prompt/response/reward triples), `end` (status, reason).
"""

from __future__ import annotations

import json
import math

PROTOCOL_VERSION = 1
EVENT_TYPES = ("hello", "metric", "gpu", "state", "log", "sample", "end")


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
