"""What the Ray path costs over `local` on the tiny preset: every role in its own process
(actor, reference, engine; the batch crosses process boundaries through Ray's object store, and
the engine is re-synced from the actor's weights after every update) against one process.
A benchmark, not a test: it prints numbers.

    .venv/bin/python bench/ray_overhead.py [--steps 60] [--rounds 2] [--warmup 5]

Runs alternate (local, ray / ray, local / ...) to spread a shared machine's noise over both sides.
Per-step time is `perf/step_s` from each run's events.jsonl, the first `--warmup` steps left out;
start-up is the time from `hello` to the "loaded" log event (Ray start, placement, worker
processes, model loading).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf_train.telemetry.protocol import read_events_file  # noqa: E402

PRESET = str(REPO / "presets" / "tiny-cpu.toml")


def run_once(mode: str, steps: int, root: Path, tag: str) -> tuple[list[float], float, dict[str, float]]:
    run_dir = root / tag
    subprocess.run([sys.executable, "-m", "rlhf_train.cli", PRESET, "--run-dir", str(run_dir),
                    "--set", f"train.max_steps={steps}", "--set", f'placement.mode="{mode}"',
                    "--set", "checkpoint.save_steps=0"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    events = read_events_file(run_dir / "events.jsonl")
    metrics = [e.get("values") for e in events if e.type == "metric"]
    hello = next(e.t for e in events if e.type == "hello")
    loaded = next(e.t for e in events if e.type == "log" and e.get("total_steps") is not None)
    phases = {name: statistics.median(m[name] for m in metrics) for name in
              ("time/generate_s", "time/make_experience_s", "time/train_s", "time/weight_sync_s")}
    return [m["perf/step_s"] for m in metrics], loaded - hello, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    steps: dict[str, list[float]] = {"local": [], "ray": []}
    startup: dict[str, list[float]] = {"local": [], "ray": []}
    phases: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        for r in range(args.rounds):
            for mode in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                times, start, median_phases = run_once(mode, args.steps, Path(tmp), f"{mode}-{r}")
                steps[mode] += times[args.warmup:]
                startup[mode].append(start)
                phases[mode].append(median_phases)
                print(f"round {r} {mode:5s}: median step {statistics.median(times[args.warmup:]) * 1000:7.1f} ms, "
                      f"start-up {start:5.1f} s", flush=True)
    local, ray = statistics.median(steps["local"]), statistics.median(steps["ray"])
    print(f"\nmedian step: local {local * 1000:.1f} ms, ray {ray * 1000:.1f} ms; ray/local = {ray / local:.2f} "
          f"(+{(ray - local) * 1000:.1f} ms per step of orchestration)")
    print(f"start-up to first step: local {statistics.median(startup['local']):.1f} s, "
          f"ray {statistics.median(startup['ray']):.1f} s")
    for name in phases["local"][0]:
        lo = statistics.median(p[name] for p in phases["local"])
        ra = statistics.median(p[name] for p in phases["ray"])
        print(f"  {name:24s} local {lo * 1000:7.1f} ms   ray {ra * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
