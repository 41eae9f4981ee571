"""The run directory (DESIGN.md): `preset.toml` (resolved, as run) · `run.json` (id, pid, process
group, socket path, status running|finished|failed|stopped, start/end, versions) ·
`events.jsonl` · `train.log` · `checkpoints/`.

`pid_start` is the process's start time (clock ticks since boot, /proc/PID/stat field 22): with the
pid it tells the run's own process from a later one that reused the pid, so a `running` record whose
process is gone (killed, machine rebooted) reads as `lost` (`telemetry.runs.run_alive`). A resumed
run (`reopen`) rewrites the record with its own pid and counts `resumes`.

`run.json` is rewritten atomically (write to a temporary file, rename) so a reader never sees half
a file, and its status always says how the run ended — including when it failed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from rlhf_train.config.schema import Preset
from rlhf_train.config.writer import preset_to_toml

STATUSES = ("running", "finished", "failed", "stopped")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("rlhf-train", "torch", "transformers", "deepspeed", "ray", "vllm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot; None when it does not exist (or
    there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # field 22; the name in (...) may hold spaces


def default_run_path(preset: Preset) -> Path:
    """`<run.output_dir>/<run.name>-<UTC time>`: where a run goes when no `--run-dir` is given."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(preset.run.output_dir) / f"{preset.run.name}-{stamp}"


@dataclass
class RunInfo:
    id: str
    name: str
    pid: int
    pgid: int
    status: str
    start: str
    end: str | None = None
    reason: str = ""
    socket: str | None = None
    argv: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    pid_start: int | None = None
    resumes: int = 0


class RunDir:
    def __init__(self, path: Path, info: RunInfo):
        self.path = path
        self.info = info

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @classmethod
    def create(cls, preset: Preset, path: str | Path | None = None) -> "RunDir":
        """Make the directory (default `<output_dir>/<name>-<UTC time>`), write the resolved preset
        and a `running` run.json."""
        run_path = Path(path) if path else default_run_path(preset)
        run_path.mkdir(parents=True, exist_ok=True)
        (run_path / "checkpoints").mkdir(exist_ok=True)
        (run_path / "preset.toml").write_text(preset_to_toml(preset, title=f"resolved preset of run {run_path.name}"))
        info = RunInfo(id=run_path.name, name=preset.run.name, pid=os.getpid(), pgid=os.getpgid(0),
                       status="running", start=utc_now(), argv=list(sys.argv), versions=_versions(),
                       pid_start=process_start_ticks(os.getpid()))
        run_dir = cls(run_path, info)
        run_dir.write_info()
        return run_dir

    @classmethod
    def reopen(cls, path: Path, preset: Preset) -> "RunDir":
        """Continue the run in `path` in this process: the preset rewritten (a resume may change
        harmless keys), run.json `running` again with this pid, its first start and id kept."""
        old = json.loads((path / "run.json").read_text())
        (path / "checkpoints").mkdir(exist_ok=True)
        (path / "preset.toml").write_text(preset_to_toml(preset, title=f"resolved preset of run {path.name}"))
        info = RunInfo(id=old.get("id", path.name), name=preset.run.name, pid=os.getpid(), pgid=os.getpgid(0),
                       status="running", start=old.get("start") or utc_now(), argv=list(sys.argv),
                       versions=_versions(), pid_start=process_start_ticks(os.getpid()),
                       resumes=int(old.get("resumes") or 0) + 1)
        run_dir = cls(path, info)
        run_dir.write_info()
        return run_dir

    def write_info(self) -> None:
        tmp = self.path / "run.json.tmp"
        tmp.write_text(json.dumps(asdict(self.info), indent=2))
        tmp.replace(self.path / "run.json")

    def finish(self, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self.info.status, self.info.reason, self.info.end = status, reason, utc_now()
        self.write_info()
