"""The runs under a directory, summarised from their `run.json` and the tail of `events.jsonl`
(`rlhf-train runs`). A `running` run whose process is gone — or whose pid now belongs to a
process started later (`run.json`'s `pid_start`) — is reported as `lost`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rlhf_train.telemetry.protocol import decode_lines
from rlhf_train.telemetry.rundir import process_start_ticks

TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class RunSummary:
    id: str
    path: str
    status: str
    start: str
    step: int | None
    total_steps: int | None
    reward: float | None
    reason: str

    def as_json(self) -> dict:
        return asdict(self)


def process_alive(pid: object) -> bool:
    """Whether a process with this pid exists (anything but a positive int is no process)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_alive(info: dict) -> bool:
    """Whether the process a run.json names is still that run's process: alive, and started when
    the record says (a record without `pid_start` trusts the pid alone)."""
    pid = info.get("pid")
    if not process_alive(pid):
        return False
    recorded = info.get("pid_start")
    return recorded is None or process_start_ticks(pid) in (None, recorded)


def _last_metric(events_path: Path) -> tuple[int | None, float | None]:
    """Step and reward of the newest `metric` event, reading only the file's tail."""
    if not events_path.is_file():
        return None, None
    with events_path.open("rb") as f:
        f.seek(max(0, events_path.stat().st_size - TAIL_BYTES))
        events = decode_lines(f.read().splitlines())
    for event in reversed(events):
        if event.type == "metric":
            return event.get("step"), (event.get("values") or {}).get("reward/mean")
    return None, None


def _total_steps(events_path: Path) -> int | None:
    """`total_steps` of the run's `hello`, which is always its first event."""
    if not events_path.is_file():
        return None
    with events_path.open("rb") as f:
        first = decode_lines([f.readline()])
    return first[0].get("total_steps") if first and first[0].type == "hello" else None


def summarise(run_dir: Path) -> RunSummary | None:
    """One run's summary; None when the directory holds no readable run.json."""
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    status = info.get("status", "?")
    if status == "running" and not run_alive(info):
        status = "lost"
    step, reward = _last_metric(run_dir / "events.jsonl")
    return RunSummary(id=info.get("id", run_dir.name), path=str(run_dir), status=status, start=info.get("start", ""),
                      step=step, total_steps=_total_steps(run_dir / "events.jsonl"), reward=reward,
                      reason=info.get("reason", ""))


def list_runs(root: Path) -> list[RunSummary]:
    """Every run directly under `root`, newest first."""
    if not root.is_dir():
        return []
    found = [s for d in root.iterdir() if d.is_dir() and (s := summarise(d)) is not None]
    return sorted(found, key=lambda s: s.start, reverse=True)


def age(start: str, now: datetime | None = None) -> str:
    try:
        began = datetime.fromisoformat(start)
    except ValueError:
        return "?"
    seconds = int(((now or datetime.now(timezone.utc)) - began).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def render_table(runs: list[RunSummary]) -> str:
    if not runs:
        return "no runs"
    rows = [("RUN", "STATUS", "STEP", "REWARD", "STARTED", "REASON")]
    for r in runs:
        step = "-" if r.step is None else f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        reward = "-" if r.reward is None else f"{r.reward:.3f}"
        rows.append((r.id, r.status, step, reward, age(r.start), r.reason[:60]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
