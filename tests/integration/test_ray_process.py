"""Ray runs as the user starts them, in their own process with their own Ray cluster: a worker
killed mid-run ends the run with its role named, SIGTERM stops cleanly, no Ray process outlives
the run, and two Ray nodes on this machine stand in for two hosts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, TINY, events, run_info

pytestmark = pytest.mark.slow

RAY_MARKERS = (b"raylet", b"gcs_server", b"ray::", b"default_worker.py", b"dashboard/agent", b"log_monitor",
               b"runtime_env/agent")


def ray_processes() -> set[int]:
    """Pids of every Ray process on this machine (cluster services and workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if any(marker in cmdline for marker in RAY_MARKERS):
                found.add(int(entry.name))
    return found


def start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "rlhf_train.cli", TINY, "--run-dir", str(run_dir), "--set", 'placement.mode="ray"']
    for item in overrides:
        args += ["--set", item]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for(condition, timeout_s: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) while waiting for {what}: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)


def placed(run_dir: Path) -> list[dict] | None:
    try:
        return next((e["workers"] for e in events(run_dir, "log") if "workers" in e), None)
    except (OSError, json.JSONDecodeError):
        return None


def stepping(run_dir: Path) -> bool:
    try:
        return bool(events(run_dir, "metric"))
    except (OSError, json.JSONDecodeError):
        return False


def assert_no_ray_left(before: set[int], timeout_s: float = 30) -> None:
    wait_for(lambda: not (ray_processes() - before), timeout_s, "the run's Ray processes to exit")


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def engine_in_a_stepping_run(run: Path, procs: list, *overrides: str) -> tuple[subprocess.Popen, dict]:
    """Start a long run, wait for its first step; the run and its engine worker."""
    proc = start(run, "train.max_steps=100000", *overrides)
    procs.append(proc)
    workers = wait_for(lambda: placed(run), 120, "the workers to be placed", proc)
    wait_for(lambda: stepping(run), 180, "the first step", proc)
    return proc, next(w for w in workers if w["role"] == "engine")


def test_a_killed_worker_ends_the_run_naming_its_role(tmp_path, procs):
    before = ray_processes()
    run = tmp_path / "run"
    proc, engine = engine_in_a_stepping_run(run, procs)
    os.kill(engine["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    assert proc.wait(timeout=60) == 1
    assert time.monotonic() - killed_at < 30
    info = run_info(run)
    assert info["status"] == "failed"
    assert info["reason"].startswith(f"the engine worker (rank 0, pid {engine['pid']}) died: "), info["reason"]
    end = events(run)[-1]
    assert (end["type"], end["status"], end["reason"]) == ("end", "failed", info["reason"])
    assert_no_ray_left(before)


def test_a_stuck_engine_ends_the_run_after_the_phase_timeout_naming_it_and_the_step(tmp_path, procs):
    """A worker that stops answering (here SIGSTOP: alive, holding its GPU, doing nothing — what a
    hung collective looks like) ends the run after [placement].phase_timeout_s, not never."""
    before = ray_processes()
    run = tmp_path / "run"
    proc, engine = engine_in_a_stepping_run(run, procs, "placement.phase_timeout_s=5")
    os.kill(engine["pid"], signal.SIGSTOP)
    stopped_at = time.monotonic()
    assert proc.wait(timeout=90) == 1
    assert 5 <= time.monotonic() - stopped_at < 60
    reason = run_info(run)["reason"]
    assert re.fullmatch(r"step \d+: the engine's (generate|weight sync) did not finish within 5 s "
                        r"\(\[placement\]\.phase_timeout_s\): a hung worker \(e\.g\. a collective waiting for a "
                        r"peer that is gone\)", reason), reason
    assert_no_ray_left(before)


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_stopping_leaves_no_ray_process(tmp_path, procs, how):
    before = ray_processes()
    run = tmp_path / "run"
    proc = start(run, "train.max_steps=100000")
    procs.append(proc)
    wait_for(lambda: stepping(run), 240, "the first step", proc)
    assert ray_processes() - before, "the run started Ray processes"
    if how == "sigterm":  # `rlhf-train stop`, the TUI: finish the step, save, exit 0
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        assert run_info(run)["status"] == "stopped"
        assert any(p.name.startswith("step_") for p in (run / "checkpoints").iterdir())
    else:  # a terminal's Ctrl-C reaches the whole foreground process group, the workers too
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
        assert (run_info(run)["status"], run_info(run)["reason"]) == ("stopped", "stop requested (Ctrl-C)")
        assert any(p.name.startswith("step_") for p in (run / "checkpoints").iterdir())
    assert_no_ray_left(before)


def test_two_ray_nodes_stand_in_for_two_hosts(tmp_path, procs):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        run = tmp_path / "run"
        proc = start(run, "train.max_steps=2", "placement.nodes=2", f'placement.address="{cluster.address}"')
        procs.append(proc)
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
        workers = {w["role"]: w["node_id"] for w in placed(run)}
        # the plan deals colocation groups round-robin: actor → node0, reference → node1, engine → node0
        assert workers["actor"] == workers["engine"] != workers["reference"]
        assert set(workers.values()) == {node.node_id for node in cluster.list_all_nodes()}
        assert run_info(run)["status"] == "finished"
        # without an address a run starts a cluster of its own, even with this one up (Ray's default
        # would join the last cluster started on the machine)
        alone = tmp_path / "alone"
        proc = start(alone, "train.max_steps=1")
        procs.append(proc)
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
        assert not {w["node_id"] for w in placed(alone)} & set(workers.values())
    finally:
        cluster.shutdown()
