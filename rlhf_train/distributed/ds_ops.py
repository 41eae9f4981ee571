"""Build DeepSpeed's CPU ops ahead of the first run: `python -m rlhf_train.distributed.ds_ops`.

DeepSpeed installs without compiled ops (`DS_BUILD_OPS=0`) and JIT-compiles each with gcc on first
use — FusedAdam (its optimizer), DeepSpeedCPUAdam (optimizer offload) and the shared-memory
collectives, about a minute each on 2 cores. `make setup` runs this once so that a run does not
stall at its first step; the builds are cached in the environment (`<prefix>/torch_extensions`, see
`ds_engine.import_deepspeed`). On a CUDA machine
DeepSpeed's CUDA builders are used instead and nothing is built here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

OPS = ("FusedAdamBuilder", "CPUAdamBuilder", "ShareMemCommBuilder")
STALE_LOCK_S = 600.0
"""A build lock older than this belongs to a build that was killed (one takes about a minute)."""


def remove_stale_locks(root: Path, now: float | None = None) -> list[Path]:
    """Delete torch's build locks under `root` left by killed builds: while one exists every later
    build (and so every run) waits for it forever, silently. Returns the removed paths."""
    now = time.time() if now is None else now
    stale = [lock for lock in root.glob("*/lock") if now - lock.stat().st_mtime > STALE_LOCK_S]
    for lock in stale:
        lock.unlink()
    return stale


def main() -> int:
    if torch.cuda.is_available():
        print("ds_ops: CUDA present, DeepSpeed builds its CUDA ops itself; nothing to do")
        return 0
    from rlhf_train.distributed.ds_engine import import_deepspeed

    import_deepspeed()
    from deepspeed.accelerator import get_accelerator
    from torch.utils.cpp_extension import _get_build_directory

    for lock in remove_stale_locks(Path(_get_build_directory("", verbose=False))):
        print(f"ds_ops: removed a stale build lock left by a killed build: {lock}")

    for name in OPS:
        started = time.monotonic()
        get_accelerator().create_op_builder(name).load(verbose=False)
        print(f"ds_ops: {name} ready ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
