"""Memory per phase of the hybrid engine: the same colocated run with engine sleep + DeepSpeed
offload (hybrid on) and without (off), memory read right after every sleep/wake/offload/reload
(the `gpu` events tagged `transition`) and every sampling interval. Prints, per run, the memory
after each kind of move and the peak; then the peak ratio on ÷ off (target ≤ 0.5 on a GPU) and the
weight-sync share of a step (target ≤ 5 %). Its last line is one JSON object.

    .venv/bin/python bench/hybrid_memory.py [--steps 6] [--warmup 2]

On a GPU: the 0.35 B model and preset of `gpu_step.py`, GPU memory (NVML, every process on the
device). Without one: a 25 M-parameter model of the same family on the CPU, where "memory" is the
resident memory of the run's worker processes. That is the honest CPU reading, not the GPU target:
offloading DeepSpeed states to host memory frees nothing when the device *is* host memory, and
only the HF engine's released weights show.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import gpu_step

REPO = gpu_step.REPO
CPU_SHAPE = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=64, max_position_embeddings=256)


def cpu_preset_text(model: Path, steps: int, hybrid: bool) -> str:
    """`gpu_step.preset_text` cut to what two CPU cores run in minutes: float32, no GPU, small batch."""
    text = gpu_step.preset_text(model, steps, hybrid)
    for old, new in (('dtype = "bfloat16"', 'dtype = "float32"'), ("bf16 = true", "bf16 = false"),
                     ("gpus_per_node = 1", "gpus_per_node = 0"), ("rollout_batch_size = 32", "rollout_batch_size = 4"),
                     ("train_batch_size = 256", "train_batch_size = 32"), ("micro_train_batch_size = 32",
                                                                            "micro_train_batch_size = 16"),
                     ("max_new_tokens = 64", "max_new_tokens = 8")):
        assert old in text, old
        text = text.replace(old, new)
    return text


def used_bytes(event, on_gpu: bool) -> int:
    """Memory a `gpu` event saw: every GPU's used bytes, or the run's processes' resident bytes."""
    if on_gpu:
        return sum(d.get("used_bytes") or 0 for d in event.get("devices") or [])
    return sum(p.get("rss_bytes") or 0 for p in (event.get("host") or {}).get("processes") or [])


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_and_watch_rss(preset: Path, run_dir: Path, every_s: float = 0.1) -> int:
    """Run the preset; meanwhile sum the resident memory of its Ray workers (pids from the `placed`
    log event) every `every_s`; the peak of that sum. The CPU's stand-in for NVML's device memory
    (the sampler reads host memory only at moves there)."""
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_train.cli", str(preset), "--run-dir", str(run_dir)],
                            cwd=REPO, stdout=subprocess.DEVNULL)
    pids: list[int] = []
    peak = 0
    while proc.poll() is None:
        if not pids:
            try:
                placed = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
                          if '"workers"' in line]
                pids = [w["pid"] for w in placed[0]["workers"]] if placed else []
            except (OSError, json.JSONDecodeError):
                pass
        peak = max(peak, sum(rss_bytes(pid) for pid in pids))
        time.sleep(every_s)
    if proc.returncode:
        raise SystemExit(f"the {preset.stem} run failed (exit {proc.returncode}); see {run_dir}/train.log")
    return peak


def phases(run_dir: Path, on_gpu: bool, warmup: int) -> dict:
    """Memory after each kind of move ("engine→asleep", ...; max over the steps after warm-up), the
    peak over every sample, and the median weight-sync share of a step."""
    from rlhf_train.telemetry.protocol import read_events_file

    events = read_events_file(run_dir / "events.jsonl")
    metrics = [e.get("values") for e in events if e.type == "metric"]
    after: dict[str, int] = defaultdict(int)
    steps_seen = 0
    for event in events:
        if event.type == "metric":
            steps_seen += 1
        elif event.type == "gpu" and event.get("transition") and steps_seen >= warmup:
            move = event.get("transition")
            key = f"{move['role']}→{move['to']}"
            after[key] = max(after[key], used_bytes(event, on_gpu))
    peak = max((used_bytes(e, on_gpu) for e in events if e.type == "gpu"), default=0)
    shares = [m["time/weight_sync_s"] / m["perf/step_s"] for m in metrics[warmup:]]
    return {"after_gib": {k: v / 2**30 for k, v in sorted(after.items())}, "peak_gib": peak / 2**30,
            "weight_sync_share": statistics.median(shares) if shares else None,
            "s_per_step": statistics.median(m["perf/step_s"] for m in metrics[warmup:]) if metrics[warmup:] else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    import torch

    from transformers.utils import logging as transformers_logging

    from rlhf_train.models.tiny import save_tiny

    transformers_logging.disable_progress_bar()

    on_gpu = torch.cuda.is_available()
    what = "GPU memory (NVML)" if on_gpu else "resident memory of the run's processes (CPU: not the GPU target)"
    print(f"hybrid_memory: {what}, {args.steps} steps, first {args.warmup} left out", flush=True)
    result: dict = {"device": "gpu" if on_gpu else "cpu"}
    with tempfile.TemporaryDirectory(prefix="hybrid-memory-") as tmp:
        root = Path(tmp)
        model = save_tiny(root / "model", seed=1, **(gpu_step.SHAPE if on_gpu else CPU_SHAPE))
        for hybrid in (True, False):
            tag = f"hybrid-{'on' if hybrid else 'off'}"
            preset = root / f"{tag}.toml"
            text = (gpu_step.preset_text if on_gpu else cpu_preset_text)(model, args.steps, hybrid)
            preset.write_text(text + "[telemetry]\n"
                              "sample_interval_s = 0.5\n")
            peak_rss = run_and_watch_rss(preset, root / tag)
            result[tag] = f = phases(root / tag, on_gpu, args.warmup)
            if not on_gpu:
                f["peak_gib"] = peak_rss / 2**30
            moves = "  ".join(f"{k} {v:.2f}" for k, v in f["after_gib"].items()) or "no moves (nothing sleeps)"
            print(f"{tag:10s} peak {f['peak_gib']:.2f} GiB  s/step {f['s_per_step']:.2f}  weight sync "
                  f"{f['weight_sync_share'] * 100:.1f} % of a step\n           after each move (GiB): {moves}",
                  flush=True)
    on, off = result["hybrid-on"], result["hybrid-off"]
    result["peak_memory_ratio"] = on["peak_gib"] / max(off["peak_gib"], 1e-12)
    result["weight_sync_share"] = on["weight_sync_share"]
    print(f"peak memory on ÷ off: {result['peak_memory_ratio']:.2f} (target ≤ 0.5 on a GPU); weight sync "
          f"{result['weight_sync_share'] * 100:.1f} % of a step (target ≤ 5 %)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
