"""The checkpoint directory of a run, written so that a crash at any instant leaves the newest
*complete* checkpoint usable:

    checkpoints/
        step_000004/          complete: manifest.json lists every file and its size
        step_000006.partial/  being written (or left by a crash); never read
        latest                "step_000004": the newest complete checkpoint, replaced last

`write` fills `step_N.partial/`, writes `manifest.json` (relative path → size in bytes) last inside
it, renames it to `step_N` (one atomic rename), then replaces `latest` (temporary file + rename),
then deletes all but the newest `keep` complete ones (and any left incomplete by a crash). A
failure while writing (a full disk, a file-size limit) removes the partial directory and raises
`CheckpointWriteError` (a `RunError` from a worker is passed on as it is); the previous checkpoint
and `latest` are untouched. `newest_complete` takes the newest directory whose files all exist
with the sizes its manifest lists (a truncated or half-written one is skipped, with the reason).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlhf_train.errors import RunError

MANIFEST = "manifest.json"
LATEST = "latest"
PARTIAL = ".partial"
_NAME = re.compile(r"^step_(\d{6,})$")


class CheckpointWriteError(RunError):
    """A checkpoint could not be written; the previous one is still the newest complete checkpoint."""


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def step_of(path: Path) -> int | None:
    """The step of a `step_NNNNNN` directory name; None for anything else (`.partial` included)."""
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def problem(directory: Path) -> str | None:
    """Why `directory` is not a complete checkpoint (None when it is)."""
    try:
        listed = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest.json (written last: the checkpoint was not finished)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest.json ({exc})"
    if not isinstance(listed, dict) or not listed:
        return "manifest.json lists no files"
    for name, size in listed.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {size}"
    return None


@dataclass(frozen=True)
class Found:
    """The newest complete checkpoint (None when there is none) and the newer ones skipped, with why."""

    path: Path | None
    skipped: list[str]

    @property
    def step(self) -> int:
        return 0 if self.path is None else step_of(self.path)


def complete_checkpoints(root: Path) -> list[Path]:
    """Every complete `step_N` directory under `root`, oldest first."""
    dirs = sorted((p for p in root.glob("step_*") if p.is_dir() and step_of(p) is not None), key=step_of)
    return [p for p in dirs if problem(p) is None]


def newest_complete(root: Path) -> Found:
    skipped = []
    if root.is_dir():
        for path in sorted((p for p in root.glob("step_*") if p.is_dir() and step_of(p) is not None),
                           key=step_of, reverse=True):
            why = problem(path)
            if why is None:
                return Found(path, skipped)
            skipped.append(f"{path.name}: {why}")
    return Found(None, skipped)


def write(root: Path, step: int, keep: int, fill: Callable[[Path], None]) -> Path:
    """Write checkpoint `step` under `root` atomically (module docstring): `fill(directory)` writes
    its files into the partial directory. Returns the final directory."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / step_dir_name(step)
    partial = target.with_name(target.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        fill(partial)
        for path in partial.rglob("*"):
            if path.is_file():
                with path.open("rb+") as f:
                    os.fsync(f.fileno())
        _write_text_atomic(partial / MANIFEST, json.dumps(_manifest(partial), indent=1))
        if target.exists():  # the same step saved again (a resumed run that stopped at once)
            shutil.rmtree(target)
        partial.rename(target)
        _fsync_dir(root)
    except RunError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
        shutil.rmtree(partial, ignore_errors=True)
        previous = newest_complete(root).path
        raise CheckpointWriteError(
            f"could not write checkpoint {target.name} in {root}: {_first_line(exc)}; "
            + (f"the previous checkpoint {previous.name} is intact and --resume continues from it"
               if previous else "there is no earlier checkpoint")
            + "; free disk space (or raise the file-size limit) and resume") from None
    _write_text_atomic(root / LATEST, target.name + "\n")
    kept = set(complete_checkpoints(root)[-keep:])
    for old in root.glob("step_*"):  # older complete ones, crashed (incomplete or partial) ones
        if old.is_dir() and old not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return target
