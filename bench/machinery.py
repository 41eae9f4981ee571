"""What our own machinery costs, each as a ratio or a time. A benchmark, not a test: it prints
numbers; its last line is one JSON object.

    .venv/bin/python bench/machinery.py [--quick] [--skip telemetry,ray,cli,tui]

- telemetry: the tiny preset with the live socket on (two viewers) ÷ off — `telemetry_overhead.py`'s
  runs, alternated (target ≤ 1.01);
- ray: the tiny preset with `placement.mode = "ray"` ÷ `"local"` per step — `ray_overhead.py`'s runs;
- cli: wall time of `rlhf-train --help` and `rlhf-train check presets/tiny-cpu.toml` ÷ a bare
  `python -c pass` (median of `--repeat` runs each, interleaved);
- tui: `rlhf-tui` on a pseudo-terminal (120×36, no runs): time from exec to the first frame (the runs
  screen's title drawn; target ≤ 1 s), then its CPU use while idle for `--idle-s` seconds (% of one core).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ray_overhead  # noqa: E402
import telemetry_overhead  # noqa: E402

PRESET = "presets/tiny-cpu.toml"
ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>])")
BIN = Path(sys.executable).parent


def _alternate(modes: tuple[str, str], rounds: int, once) -> dict[str, list[float]]:
    """`once(mode, tag)` → kept step times, for each mode, order flipped every round."""
    steps: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            steps[mode] += once(mode, f"{mode}{r}")
    return steps


def telemetry_ratio(steps: int, rounds: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory(prefix="mach-tel-") as tmp:
        times = _alternate(("off", "on"), rounds, lambda mode, tag: telemetry_overhead.run_once(
            PRESET, steps, mode == "on", Path(tmp), tag)[0][warmup:])
    ratio = statistics.median(times["on"]) / statistics.median(times["off"])
    print(f"telemetry on ÷ off (median step): {ratio:.4f}  (target ≤ 1.01; "
          f"off {statistics.median(times['off']) * 1000:.1f} ms)", flush=True)
    return ratio


def ray_ratio(steps: int, rounds: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory(prefix="mach-ray-") as tmp:
        times = _alternate(("local", "ray"), rounds, lambda mode, tag: ray_overhead.run_once(
            mode, steps, Path(tmp), tag)[0][warmup:])
    ratio = statistics.median(times["ray"]) / statistics.median(times["local"])
    print(f"ray ÷ local (median step): {ratio:.2f}  (local {statistics.median(times['local']) * 1000:.1f} ms, "
          f"ray {statistics.median(times['ray']) * 1000:.1f} ms)", flush=True)
    return ratio


def cli_ratios(repeat: int) -> dict[str, float]:
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "rlhf-train --help": [str(BIN / "rlhf-train"), "--help"],
                "rlhf-train check": [str(BIN / "rlhf-train"), "check", PRESET]}
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, cmd in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            walls[name].append(time.perf_counter() - t0)
    base = statistics.median(walls["python -c pass"])
    out = {"python_pass_s": base}
    for name in ("rlhf-train --help", "rlhf-train check"):
        wall = statistics.median(walls[name])
        key = name.split()[1].strip("-")
        out[f"cli_{key}_s"], out[f"cli_{key}_ratio"] = wall, wall / base
        print(f"{name:18s} {wall * 1000:6.0f} ms = {wall / base:5.1f} × python -c pass ({base * 1000:.0f} ms)")
    return out


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tui_first_frame(idle_s: float, size: tuple[int, int] = (120, 36)) -> dict[str, float]:
    """Start `rlhf-tui` on a pty; seconds until the runs screen's title shows; idle CPU after."""
    with tempfile.TemporaryDirectory(prefix="mach-tui-") as root:
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update(TERM="xterm-256color", COLUMNS=str(size[0]), LINES=str(size[1]))
            os.execv(str(BIN / "rlhf-tui"), [str(BIN / "rlhf-tui"), "--root", root])
        t0 = time.perf_counter()
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        screen, first = b"", None
        try:
            while time.perf_counter() - t0 < 30:
                if select.select([fd], [], [], 0.05)[0]:
                    screen += os.read(fd, 1 << 16)
                    if first is None and b"runs under" in ANSI.sub(b"", screen):
                        first = time.perf_counter() - t0
                        cpu0, t_idle = _cpu_s(pid), time.perf_counter()
                if first is not None and time.perf_counter() - t_idle >= idle_s:
                    idle = (_cpu_s(pid) - cpu0) / (time.perf_counter() - t_idle)
                    break
            else:
                raise SystemExit("rlhf-tui drew no runs screen within 30 s")
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(fd)
    print(f"rlhf-tui first frame {first:.2f} s (target ≤ 1 s); idle CPU {idle * 100:.1f} % of a core "
          f"over {idle_s:.0f} s", flush=True)
    return {"tui_first_frame_s": first, "tui_idle_cpu_percent": idle * 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (about 2 minutes)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: telemetry,ray,cli,tui")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--idle-s", type=float, default=5.0)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.repeat, args.idle_s = 40, 1, 3, 3.0
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - {"telemetry", "ray", "cli", "tui"}
    if unknown:
        parser.error(f"--skip: unknown part(s) {sorted(unknown)}; choose from telemetry, ray, cli, tui")
    result: dict[str, float] = {}
    if "cli" not in skip:
        result.update(cli_ratios(args.repeat))
    if "tui" not in skip:
        result.update(tui_first_frame(args.idle_s))
    if "telemetry" not in skip:
        result["telemetry_on_off_ratio"] = telemetry_ratio(args.steps, args.rounds, args.warmup)
    if "ray" not in skip:
        result["ray_local_ratio"] = ray_ratio(args.steps, args.rounds, args.warmup)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
