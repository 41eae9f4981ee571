"""What the live telemetry socket costs a run: the tiny preset with `[telemetry].socket = false`
against `true` with two viewers attached (one reading everything through `iter_events`, one
connected and frozen: it never reads). A benchmark, not a test: it prints numbers.

    .venv/bin/python bench/telemetry_overhead.py [--steps 150] [--rounds 3]

Runs alternate (off,on / on,off / ...) to spread the noise of a shared machine over both sides.
Step time is the `perf/step_s` metric from each run's events.jsonl; the first `--warmup` steps of
every run are left out. On a busy shared machine run-to-run noise can exceed the effect, so the
script ends with an in-process measurement of the same cost (emit latency with and without the
server, and the server thread's CPU per event) scaled to the run's events per step.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf_train.telemetry.client import iter_events  # noqa: E402
from rlhf_train.telemetry.protocol import read_events_file  # noqa: E402


def _viewers(run_dir: Path, proc: subprocess.Popen, counts: dict) -> None:
    """Attach a reading viewer and a frozen one as soon as run.json names the socket."""
    while proc.poll() is None:
        try:
            path = json.loads((run_dir / "run.json").read_text()).get("socket")
        except (OSError, ValueError):
            path = None
        if path and os.path.exists(path):
            break
        time.sleep(0.01)
    else:
        return
    frozen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    frozen.connect(path)
    frozen.sendall(b'{"since_seq": 0}\n')  # and never reads
    counts["frozen"] = frozen
    for event in iter_events(run_dir, timeout=600):
        counts["read"] = counts.get("read", 0) + 1
        counts["dropped"] = counts.get("dropped", 0) + event.dropped


def run_once(preset: str, steps: int, telemetry: bool, root: Path, tag: str) -> tuple[list[float], dict]:
    run_dir = root / tag
    cmd = [sys.executable, "-m", "rlhf_train.cli", preset, "--run-dir", str(run_dir),
           "--set", f"train.max_steps={steps}", "--set", f"telemetry.socket={'true' if telemetry else 'false'}"]
    counts: dict = {}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = threading.Thread(target=_viewers, args=(run_dir, proc, counts), daemon=True) if telemetry else None
    if watcher:
        watcher.start()
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"run {tag} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
    if watcher:
        watcher.join(60)
        if "frozen" in counts:
            counts.pop("frozen").close()
    events = read_events_file(run_dir / "events.jsonl")
    step_s = [e.get("values")["perf/step_s"] for e in events
              if e.type == "metric" and e.get("values", {}).get("perf/step_s") is not None]
    counts["events"] = len(events)
    return step_s, counts


def _thread_cpu_s(native_id: int) -> float:
    """CPU time (user + system) of one thread of this process, from /proc (Linux)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def micro(n: int, events_per_step: float, step_s: float) -> None:
    """The same cost measured directly, in-process and free of run-to-run noise: the emit call
    with and without a server (one viewer reading in another process, one frozen), plus the CPU
    the server thread burns, per event."""
    from rlhf_train.telemetry.emitter import Emitter
    from rlhf_train.telemetry.server import TelemetryServer

    values = {f"group/metric_{i}": 0.123456789 * i for i in range(24)}
    reader_code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                   "s.sendall(b'{\"since_seq\": 0}\\n')\nwhile s.recv(1<<16): pass")
    results = {}
    with tempfile.TemporaryDirectory(prefix="tmicro") as tmp:
        for mode in ("off", "on", "off", "on"):
            run_dir = Path(tmp) / f"{mode}{len(results)}"
            run_dir.mkdir()
            emitter = Emitter(run_dir / "events.jsonl")
            emitter.emit("hello", run="bench")
            server = reader = frozen = None
            if mode == "on":
                server = TelemetryServer(emitter, run_dir).start()
                reader = subprocess.Popen([sys.executable, "-c", reader_code, str(server.path)])
                frozen = socket.socket(socket.AF_UNIX)
                frozen.connect(str(server.path))
                frozen.sendall(b'{"since_seq": 0}\n')
                while sum(v.state == "streaming" for v in server.viewers()) < 2:
                    time.sleep(0.01)
                cpu0 = _thread_cpu_s(server._thread.native_id)
            t0 = time.perf_counter()
            for step in range(n):
                emitter.emit("metric", step=step, values=values)
            wall = time.perf_counter() - t0
            server_cpu = 0.0
            if server is not None:
                time.sleep(0.2)  # let the server finish sending
                server_cpu = _thread_cpu_s(server._thread.native_id) - cpu0
                emitter.emit("end", status="finished", reason="")
                server.close(timeout=0.2)
                frozen.close()
                reader.wait(10)
            emitter.close()
            results.setdefault(mode, []).append((wall / n, server_cpu / n))
    off = min(w for w, _ in results["off"])
    on = min(w for w, _ in results["on"])
    cpu = min(c for _, c in results["on"])
    per_step = events_per_step * (max(0.0, on - off) + cpu)
    print(f"\nin-process, {n} metric events: emit {off * 1e6:.1f} µs without a server, {on * 1e6:.1f} µs with one "
          f"(2 viewers); server thread CPU {cpu * 1e6:.1f} µs/event")
    print(f"=> at {events_per_step:.1f} events/step: {per_step * 1e3:.3f} ms per step = "
          f"{per_step / step_s * 100:.3f}% of a {step_s * 1000:.1f} ms step (upper bound: counts all server CPU "
          "as if it stalled training)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="presets/tiny-cpu.toml")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5, help="first steps of each run left out")
    parser.add_argument("--micro-events", type=int, default=20_000, help="events of the in-process measurement")
    args = parser.parse_args()
    events_per_step = []

    samples: dict[str, list[float]] = {"off": [], "on": []}
    medians: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="tbench") as tmp:
        for r in range(args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for mode in order:
                step_s, counts = run_once(args.preset, args.steps, mode == "on", Path(tmp), f"{mode}{r}")
                kept = step_s[args.warmup:]
                samples[mode] += kept
                events_per_step.append(counts["events"] / args.steps)
                medians[mode].append(statistics.median(kept))
                extra = (f"  viewer read {counts.get('read', 0)}/{counts['events']} events, "
                         f"{counts.get('dropped', 0)} dropped") if mode == "on" else ""
                print(f"round {r + 1} {mode:>3}: median step {statistics.median(kept) * 1000:7.2f} ms "
                      f"over {len(kept)} steps{extra}", flush=True)
    off, on = statistics.median(samples["off"]), statistics.median(samples["on"])
    print(f"\nmedian step time, all rounds pooled: off {off * 1000:.2f} ms   on {on * 1000:.2f} ms   "
          f"ratio on/off {on / off:.4f} (target <= 1.01)")
    per_round = statistics.median(on_r / off_r for on_r, off_r in zip(medians["on"], medians["off"]))
    print(f"median of per-round ratios: {per_round:.4f}")
    micro(args.micro_events, statistics.mean(events_per_step), off)


if __name__ == "__main__":
    main()
