"""Helpers for runs of the real trainer in tests."""

from __future__ import annotations

import json
from pathlib import Path

from rlhf_train.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "presets" / "tiny-cpu.toml")
LOCAL = 'placement.mode="local"'
"""The debugging placement, for tests about anything but placement: the tiny preset without Ray's
start-up time (the Ray path has its own tests, test_ray_*.py)."""


def run_cli(run_dir: Path, *overrides: str, preset: str = TINY) -> int:
    """Run `rlhf-train PRESET --run-dir RUN_DIR --set placement.mode="local" --set ...` in this
    process; the exit code. A `placement.mode` in `overrides` wins (it comes later)."""
    args = [preset, "--run-dir", str(run_dir), "--set", LOCAL]
    for item in overrides:
        args += ["--set", item]
    return main(args)


def events(run_dir: Path, type_: str | None = None) -> list[dict]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in lines]
    return [e for e in out if type_ is None or e["type"] == type_]


def metric_series(run_dir: Path, name: str) -> list[float]:
    return [e["values"][name] for e in events(run_dir, "metric")]


def run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())
