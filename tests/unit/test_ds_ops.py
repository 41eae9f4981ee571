"""Stale torch build locks (left by a killed DeepSpeed op build) are removed before building."""

from __future__ import annotations

import os

from rlhf_train.distributed.ds_ops import STALE_LOCK_S, remove_stale_locks


def test_only_locks_older_than_a_build_are_removed(tmp_path):
    now = 1_800_000_000.0
    for name, age in (("fused_adam", STALE_LOCK_S + 1), ("cpu_adam", 30.0)):
        (tmp_path / name).mkdir()
        lock = tmp_path / name / "lock"
        lock.touch()
        os.utime(lock, (now - age, now - age))
    (tmp_path / "fused_adam" / "fused_adam.so").touch()
    assert remove_stale_locks(tmp_path, now=now) == [tmp_path / "fused_adam" / "lock"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "cpu_adam/lock", "fused_adam/fused_adam.so"]
