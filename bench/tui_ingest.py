"""How fast the dashboard absorbs telemetry, and what it costs in memory on a long run. A
benchmark, not a test: it prints numbers.

    .venv/bin/python bench/tui_ingest.py [--events 1000000] [--size 160x48]

Synthetic but realistic events — each step of a one-GPU hybrid-engine run: 14 role state
transitions (engine asleep/awake/generating, actor, critic and reference loaded/offloaded/training),
a metric event with 22 values, a sample event with 2 samples, a gpu event with 2 devices and host
RAM per role, and now and then an info or warning log — are fed as fast as the screen takes them
into the real `DashboardScreen` (through its `source`, so reading and JSON decoding are not
measured) inside a headless app (`App.run_test`). Measured:

- events/s absorbed: N events ÷ the time until the last one is folded and drawn;
- the longest stall of the event loop (a 50 ms timer's worst lateness) — what a user would feel;
- process RSS before the app, after 10 % of the events and at the end (bounded: flat, not growing);
- with tracemalloc, the bytes a bare `DashboardState` retains after 10 % and 100 % of the events
  (fold only, no drawing).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf_train.telemetry.protocol import Event  # noqa: E402

GIB = 2**30
HYBRID_STEP = (("engine", "asleep", "awake"), ("engine", "awake", "generating"), ("engine", "generating", "awake"),
               ("engine", "awake", "asleep"), ("actor", "offloaded", "loaded"), ("reference", "offloaded", "loaded"),
               ("reference", "loaded", "offloaded"), ("critic", "offloaded", "loaded"),
               ("critic", "loaded", "training"), ("critic", "training", "loaded"), ("critic", "loaded", "offloaded"),
               ("actor", "loaded", "training"), ("actor", "training", "loaded"), ("actor", "loaded", "offloaded"))
EVENTS_PER_STEP = len(HYBRID_STEP) + 3 + 0.12
ROLES = ["actor", "critic", "reference", "engine"]


def _metrics(step: int, rng: random.Random) -> dict[str, float]:
    progress = 1 - math.exp(-step / 2000)
    times = {"generate": 4.0 + rng.random(), "make_experience": 1.5 + 0.3 * rng.random(), "train": 3.0 + rng.random(),
             "weight_sync": 0.4 + 0.1 * rng.random(), "offload": 0.8 + 0.2 * rng.random()}
    values = {"reward/mean": 0.2 + 0.6 * progress + 0.05 * rng.gauss(0, 1), "reward/std": 0.3 * rng.random(),
              "train/policy_loss": 0.05 * rng.gauss(0, 1), "train/kl": 0.02 * progress + 0.002 * rng.random(),
              "train/critic_loss": 0.5 * (1 - progress) + 0.05 * rng.random(), "train/entropy": 2.0 - progress,
              "train/clip_frac": 0.1 * rng.random(), "train/approx_kl": 0.001 * rng.random(),
              "train/grad_norm": rng.random(), "train/values": progress, "critic/explained_var": progress,
              "train/return": progress, "train/actor_lr": 1e-6, "train/kl_coef": 0.01,
              "rollout/response_length": 200 + 100 * progress + 10 * rng.random(), "rollout/truncated_frac": 0.02,
              "perf/rollout_tokens_per_s": 9000 + 1000 * rng.random(), "perf/step_s": sum(times.values())}
    values.update({f"time/{phase}_s": seconds for phase, seconds in times.items()})
    return values


def synthetic_events(n: int, seed: int = 0, t0: float | None = None) -> Iterator[Event]:
    """`n` events of a hybrid-engine run (hello first, end last; labelled fake GPU readings)."""
    rng = random.Random(seed)
    total_steps = max(1, math.ceil((n - 2) / EVENTS_PER_STEP))
    t = time.time() - total_steps * 0.01 if t0 is None else t0
    seq = 0

    def event(type_: str, **data) -> Event:
        nonlocal seq, t
        seq += 1
        t += 0.01 / EVENTS_PER_STEP
        return Event(seq, t, type_, data)

    yield event("hello", run="bench-hybrid", name="bench-hybrid", pid=1, roles=ROLES, total_steps=total_steps,
                devices=[{"index": 0, "name": "Fake H100 (bench)", "total_bytes": 80 * GIB}])
    step = 0
    while seq < n - 1:
        step += 1
        batch = [("state", {"role": role, "from": a, "to": b}) for role, a, b in HYBRID_STEP]
        used = [(40 + 30 * rng.random()) * GIB, (10 + 5 * rng.random()) * GIB]
        batch.append(("gpu", {"devices": [
            {"index": i, "name": f"Fake H100 #{i} (bench)", "used_bytes": int(u), "total_bytes": 80 * GIB,
             "util_percent": 100 * rng.random(), "mem_util_percent": 50.0, "temperature_c": 60.0, "power_w": 300.0,
             "processes": [{"pid": 11, "used_bytes": int(u * 0.7), "role": "engine"},
                           {"pid": 12, "used_bytes": int(u * 0.3), "role": "actor"}]} for i, u in enumerate(used)],
            "host": {"total_bytes": 512 * GIB, "available_bytes": int((300 + 50 * rng.random()) * GIB),
                     "processes": [{"pid": 12, "role": "actor", "rss_bytes": 120 * GIB},
                                   {"pid": 13, "role": "critic", "rss_bytes": 60 * GIB}]}}))
        batch.append(("sample", {"step": step, "samples": [
            {"prompt": f"What is {step % 9} + {step % 7}?", "response": f"{step % 9 + step % 7}", "reward": 1.0},
            {"prompt": f"What is {step % 5} + 4?", "response": "I think it is five", "reward": 0.0}]}))
        batch.append(("metric", {"step": step, "values": _metrics(step, rng)}))
        if step % 10 == 0:
            batch.append(("log", {"level": "info", "message": f"checkpoint saved: step_{step:06d}"}))
        if step % 50 == 0:
            batch.append(("log", {"level": "warning", "message": "reward server slow: retry 1/5"}))
        for type_, data in batch:
            if seq >= n - 1:
                break
            yield event(type_, **data)
    yield event("end", status="finished", reason="")


def rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def through_the_screen(n: int, size: tuple[int, int]) -> dict:
    from textual.app import App

    from rlhf_tui.screens.dashboard import DashboardScreen

    result: dict = {"rss_before": rss_mib()}

    class Bench(App):
        def on_mount(self) -> None:
            self.push_screen(DashboardScreen("bench-run", source=lambda: synthetic_events(n)))

    async def scenario() -> None:
        app = Bench()
        async with app.run_test(size=size) as pilot:
            screen = app.screen
            lag = 0.0
            expected = time.monotonic() + 0.05
            start = time.monotonic()
            while not (isinstance(screen, DashboardScreen) and screen.ended):
                await asyncio.sleep(0.05)
                now = time.monotonic()
                lag, expected = max(lag, now - expected), now + 0.05
                screen = app.screen
                if "rss_10" not in result and screen.state.events >= n // 10:
                    result["rss_10"] = rss_mib()
                if now - start > 600:
                    raise SystemExit("gave up after 600 s")
            await pilot.pause()
            result.update(elapsed=time.monotonic() - start, lag=lag, folded=screen.state.events,
                          step=screen.view.step, points=len(screen.state.series["reward/mean"].points()),
                          rss_end=rss_mib())

    asyncio.run(scenario())
    return result


def fold_only(n: int) -> dict:
    from rlhf_tui.dashboard_state import DashboardState

    state = DashboardState()
    tracemalloc.start()
    retained = {}
    for i, event in enumerate(synthetic_events(n), start=1):
        state.apply(event)
        if i in (n // 10, n):
            retained[i] = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return retained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--size", default="160x48", help="terminal size WxH of the headless app")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    n = args.events

    t0 = time.perf_counter()
    consumed = sum(1 for _ in synthetic_events(n))
    gen_s = time.perf_counter() - t0
    print(f"{n:,} synthetic events (~{EVENTS_PER_STEP:.1f} per step); generating them alone: {gen_s:.1f} s "
          f"({consumed / gen_s:,.0f} events/s)", flush=True)

    r = through_the_screen(n, (width, height))
    print(f"dashboard at {width}x{height}: {r['folded']:,} events folded and drawn in {r['elapsed']:.1f} s = "
          f"{r['folded'] / r['elapsed']:,.0f} events/s; reached step {r['step']:,}")
    print(f"longest event-loop stall: {r['lag'] * 1000:.0f} ms; reward/mean history: {r['points']} points")
    print(f"RSS: {r['rss_before']:.0f} MiB before the app, {r.get('rss_10', float('nan')):.0f} MiB after "
          f"{n // 10:,} events, {r['rss_end']:.0f} MiB after {n:,}", flush=True)

    retained = fold_only(n)
    print("DashboardState alone (tracemalloc): " + ", ".join(
        f"{b / 2**20:.2f} MiB after {i:,} events" for i, b in retained.items()))


if __name__ == "__main__":
    main()
