"""Continuing a run in its own directory (`rlhf-train PRESET --resume [RUN]`): which run, whether
the preset may continue it, and which checkpoint it continues from.

A resumed run must compute what the uninterrupted run would have, so the preset it is given is
compared key by key with the run's `preset.toml`. Changes that cannot alter a step's result are
allowed (`HARMLESS`, plus the step count under a schedule that does not depend on it, see
`harmless`); any other change is refused with the diff shown.
"""

from __future__ import annotations

from pathlib import Path

from rlhf_train.checkpoint.store import Found, newest_complete
from rlhf_train.config.loader import check_preset
from rlhf_train.config.schema import Preset
from rlhf_train.errors import RunError

HARMLESS = ("run.output_dir", "checkpoint.save_steps", "checkpoint.keep", "checkpoint.nonfinite_skips",
            "telemetry.socket", "telemetry.sample_interval_s", "telemetry.nvml", "telemetry.samples_per_step",
            "placement.address", "placement.ready_timeout_s", "placement.phase_timeout_s",
            "reward.timeout_s", "reward.retries", "reward.backoff_s", "reward.backoff_max_s", "reward.jitter",
            "reward.batch_size", "reward.max_concurrency")
"""Keys whose change never alters a step's result: where files go, how often to save, what to
show, how long to wait."""
STEP_COUNT = ("train.max_steps", "train.num_episodes")
"""Keys that lengthen or shorten the run: harmless only while the learning-rate schedule does not
depend on the run's length (constant, no warm-up)."""


def flat(preset: Preset) -> dict[str, object]:
    """`section.key` → value of every key of `preset`."""
    dumped = preset.model_dump(mode="json")
    out: dict[str, object] = {"schema_version": dumped.pop("schema_version")}
    for section, table in dumped.items():
        out.update({f"{section}.{key}": value for key, value in table.items()})
    return out


def schedule_ignores_length(preset: Preset) -> bool:
    return preset.train.lr_scheduler == "constant" and preset.train.lr_warmup_ratio == 0


def harmless(key: str, old: Preset, new: Preset) -> bool:
    if key in HARMLESS:
        return True
    return key in STEP_COUNT and schedule_ignores_length(old) and schedule_ignores_length(new)


def preset_changes(old: Preset, new: Preset) -> list[tuple[str, object, object, bool]]:
    """(key, old value, new value, harmless) of every key that differs."""
    a, b = flat(old), flat(new)
    return [(key, a[key], b[key], harmless(key, old, new)) for key in a if a[key] != b[key]]


def _render(key: str, old: object, new: object) -> str:
    section, _, name = key.rpartition(".")
    return f"[{section}].{name}: {old!r} → {new!r}"


def check_resumable_preset(run_dir: Path, preset: Preset) -> list[str]:
    """The harmless changes (as lines) when `preset` may continue the run in `run_dir`; `RunError`
    with the whole diff when it may not."""
    stored = check_preset(run_dir / "preset.toml")
    if stored.preset is None:
        raise RunError(f"{run_dir / 'preset.toml'} is not a valid preset any more "
                       f"({stored.errors[0].render() if stored.errors else 'unreadable'}); the run cannot be resumed")
    changes = preset_changes(stored.preset, preset)
    refused = [c for c in changes if not c[3]]
    if refused:
        lines = [f"  {_render(k, o, n)}{'' if ok else '   (changes the run)'}" for k, o, n, ok in changes]
        allowed = ", ".join(HARMLESS + STEP_COUNT)
        raise RunError(f"the preset differs from the one run {run_dir.name} was started with:\n" + "\n".join(lines)
                       + f"\nonly these keys may change on resume: {allowed} (the step count only under a "
                         "constant schedule without warm-up); undo the other changes, or start a new run")
    return [_render(k, o, n) for k, o, n, _ in changes]


def resume_point(run_dir: Path) -> Found:
    """The checkpoint a resume of `run_dir` continues from (see `store.newest_complete`)."""
    return newest_complete(run_dir / "checkpoints")


def prepare_resume(preset: Preset, spec: str) -> tuple[Path, list[str]]:
    """The run directory `spec` names (a path, a run id, or `latest` under `[run].output_dir`) and
    the harmless preset changes, once it is known the run may be continued: it is not running, and
    the preset continues it (`check_resumable_preset`). `RunError` otherwise."""
    from rlhf_train.telemetry.client import read_run_info, resolve_run
    from rlhf_train.telemetry.runs import run_alive

    run_dir = resolve_run(spec, preset.run.output_dir)
    info = read_run_info(run_dir)
    if info.get("status") == "running" and run_alive(info):
        raise RunError(f"run {run_dir.name} is still running (pid {info.get('pid')}); stop it first "
                       f"(rlhf-train stop {run_dir}) or wait for it to end")
    return run_dir, check_resumable_preset(run_dir, preset)
