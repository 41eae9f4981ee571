"""One GPU, a 0.5B-class model: step time, throughput, the weight-sync share of a step and peak GPU
memory, with the hybrid engine on (engine sleeps, DeepSpeed states offloaded between phases) and
off. A benchmark, not a test: it prints numbers; its last line is one JSON object. Without CUDA it
says so and exits 0.

    .venv/bin/python bench/gpu_step.py [--steps 12] [--warmup 2] [--check-only]

The model is built in code, nothing downloaded: the `builtin:tiny` Llama (word-level vocabulary)
widened to 1024 hidden, 24 layers, 16 heads (4 KV heads), 4096 MLP — about 0.35 B parameters, the
compute of a 0.5B-class model less its large vocabulary — saved once and loaded by both runs from
that directory in bfloat16. Each run: GRPO on `builtin:arith`, 32 prompts × 8 samples, 64 new
tokens, ZeRO-3, `placement.mode = "ray"` with every role on the one GPU (`colocate = "all"`),
hybrid on = `[rollout].enable_sleep` and `[deepspeed].enable_sleep` true, off = both false.
Figures per run from its events.jsonl (first `--warmup` steps left out): median `perf/step_s`,
samples/s, median `perf/rollout_tokens_per_s`, median weight-sync share
(`time/weight_sync_s ÷ perf/step_s`), median `time/offload_s`, and the peak of the NVML `gpu`
events' used bytes. `--check-only` writes the presets and runs `rlhf-train check` on them (works
without a GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPE = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
             num_key_value_heads=4, head_dim=64, max_position_embeddings=1024)


def preset_text(model: Path, steps: int, hybrid: bool) -> str:
    on = "true" if hybrid else "false"
    return f"""schema_version = 1
[run]
name = "gpu-step-hybrid-{on}"
seed = 1
[model]
actor = "{model}"
dtype = "bfloat16"
[data]
prompt_data = "builtin:arith"
max_prompt_len = 16
[rollout]
engine = "hf"
n_samples_per_prompt = 8
max_new_tokens = 64
temperature = 1.0
enable_sleep = {on}
[algo]
name = "grpo"
kl_estimator = "k3"
use_kl_loss = true
kl_coef = 0.001
[train]
max_steps = {steps}
rollout_batch_size = 32
train_batch_size = 256
micro_train_batch_size = 32
micro_rollout_batch_size = 64
actor_lr = 1e-6
[deepspeed]
zero_stage = 3
bf16 = true
enable_sleep = {on}
[placement]
mode = "ray"
nodes = 1
gpus_per_node = 1
colocate = "all"
[reward]
kind = "builtin"
[checkpoint]
save_steps = 0
"""


def figures(run_dir: Path, warmup: int) -> dict[str, float]:
    from rlhf_train.telemetry.protocol import read_events_file

    events = read_events_file(run_dir / "events.jsonl")
    metrics = [e.get("values") for e in events if e.type == "metric"][warmup:]
    used = [d.get("used_bytes") or 0 for e in events if e.type == "gpu" for d in e.get("devices") or []]
    step = statistics.median(m["perf/step_s"] for m in metrics)
    return {"s_per_step": step, "samples_per_s": 256 / step,
            "rollout_tokens_per_s": statistics.median(m["perf/rollout_tokens_per_s"] for m in metrics),
            "weight_sync_share": statistics.median(m["time/weight_sync_s"] / m["perf/step_s"] for m in metrics),
            "offload_s": statistics.median(m.get("time/offload_s", 0.0) for m in metrics),
            "gpu_peak_gib": max(used, default=0) / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--check-only", action="store_true", help="write the presets and `rlhf-train check` them")
    args = parser.parse_args()
    import torch

    if not args.check_only and not torch.cuda.is_available():
        print("no CUDA device here: the GPU section is skipped (run it on a machine with one GPU)")
        print(json.dumps({"skipped": "no CUDA device"}))
        return
    from rlhf_train.models.tiny import save_tiny

    result = {}
    with tempfile.TemporaryDirectory(prefix="gpu-step-") as tmp:
        root = Path(tmp)
        model = save_tiny(root / "model", seed=1, **SHAPE)
        for hybrid in (True, False):
            tag = f"hybrid-{'on' if hybrid else 'off'}"
            preset = root / f"{tag}.toml"
            preset.write_text(preset_text(model, args.steps, hybrid))
            cmd = [sys.executable, "-m", "rlhf_train.cli"]
            if args.check_only:
                subprocess.run(cmd + ["check", str(preset)], check=True)
                continue
            subprocess.run(cmd + [str(preset), "--run-dir", str(root / tag)], check=True, cwd=REPO)
            result[tag] = figures(root / tag, args.warmup)
            f = result[tag]
            print(f"{tag:10s} {f['s_per_step']:6.2f} s/step  {f['samples_per_s']:7.1f} samples/s  "
                  f"{f['rollout_tokens_per_s']:8.0f} rollout tokens/s  weight sync {f['weight_sync_share'] * 100:4.1f} % "
                  f"of a step  offload {f['offload_s']:.2f} s  GPU peak {f['gpu_peak_gib']:.1f} GiB", flush=True)
    if result:
        on, off = result["hybrid-on"], result["hybrid-off"]
        result["hybrid_step_ratio"] = on["s_per_step"] / off["s_per_step"]
        result["hybrid_peak_memory_ratio"] = on["gpu_peak_gib"] / max(off["gpu_peak_gib"], 1e-9)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
