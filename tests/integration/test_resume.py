"""Exact resume and faults on the tiny preset (local placement): SIGKILL of the trainer's process
group at random steps and `--resume` each time reproduce the uninterrupted run step for step; a
damaged newest checkpoint falls back to the one before; NaN/inf rewards and a full disk end the
run cleanly with the checkpoints intact; nothing of a killed run stays behind."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf_train.checkpoint.store import newest_complete
from rlhf_train.telemetry.runs import summarise
from tests.integration.conftest import LOCAL, REPO, TINY, events, run_info

pytestmark = pytest.mark.slow

BASE = (LOCAL, "telemetry.socket=false", "telemetry.samples_per_step=16", "checkpoint.save_steps=2",
        "checkpoint.keep=2", "reward.normalize=true")
"""`reward.normalize`: its running statistics are state a resume must restore too."""
NOISE = ("time/", "perf/")
"""Metrics that are timings, not results."""


def cli(run: Path, *overrides: str, resume: bool = False) -> list[str]:
    args = [sys.executable, "-m", "rlhf_train.cli", TINY]
    args += ["--resume", str(run)] if resume else ["--run-dir", str(run)]
    for item in BASE + overrides:
        args += ["--set", item]
    return args


def run_to_end(run: Path, *overrides: str, resume: bool = False, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(cli(run, *overrides, resume=resume), cwd=REPO, capture_output=True, text=True,
                          timeout=600, **popen)


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def metric_steps(run: Path) -> list[int]:
    try:
        return [e["step"] for e in events(run, "metric")]
    except (OSError, json.JSONDecodeError):  # a line being written
        return []


def kill_after(run: Path, step: int, *overrides: str, resume: bool) -> None:
    """Start the run, SIGKILL its whole process group once `step` has been reported, and check
    that nothing of it is left and that it reads as lost."""
    proc = subprocess.Popen(cli(run, *overrides, resume=resume), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not any(s >= step for s in metric_steps(run)):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"step {step} never came"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while group_members(proc.pid):
        assert time.monotonic() < deadline, f"processes left in the killed group: {group_members(proc.pid)}"
        time.sleep(0.1)
    assert run_info(run)["status"] == "running" and summarise(run).status == "lost"


def final_metrics(run: Path) -> dict[int, dict[str, float]]:
    """Each step's metrics as last reported (a step redone after a resume replaces the lost one)."""
    return {e["step"]: {k: v for k, v in e["values"].items() if not k.startswith(NOISE)}
            for e in events(run, "metric")}


def prompts_by_step(run: Path) -> dict[int, list[str]]:
    return {e["step"]: [s["prompt"] for s in e["samples"]] for e in events(run, "sample")}


def segments(run: Path) -> list[list[int]]:
    """The metric steps each process of the run reported, in order (a `hello` starts a process)."""
    out: list[list[int]] = []
    for e in events(run):
        if e["type"] == "hello":
            out.append([])
        elif e["type"] == "metric":
            out[-1].append(e["step"])
    return out


def resumed_from(run: Path) -> list[int]:
    return [e["resume"]["step"] for e in events(run, "log") if "resume" in e]


def assert_same_run(run: Path, baseline: Path) -> None:
    expected, got = final_metrics(baseline), final_metrics(run)
    assert sorted(got) == sorted(expected)
    for step, values in expected.items():
        assert set(got[step]) == set(values), step
        for name, value in values.items():
            assert got[step][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, name)
    assert prompts_by_step(run) == prompts_by_step(baseline)  # the same data order
    seqs = [e["seq"] for e in events(run)]
    assert seqs == sorted(set(seqs))


def test_sigkill_at_random_steps_then_resume_matches_the_uninterrupted_run(tmp_path):
    steps = 6
    baseline = tmp_path / "baseline"
    done = run_to_end(baseline, f"train.max_steps={steps}")
    assert done.returncode == 0, done.stderr

    chooser = random.Random()
    seed = chooser.randrange(10**6)
    chooser.seed(seed)
    first = chooser.randint(2, 3)
    kills = [first, chooser.randint(first + 1, steps - 1)]
    run = tmp_path / "run"
    for number, step in enumerate(kills):
        kill_after(run, step, f"train.max_steps={steps}", resume=number > 0)
    done = run_to_end(run, f"train.max_steps={steps}", resume=True)
    assert done.returncode == 0, done.stderr
    assert run_info(run)["status"] == "finished" and run_info(run)["resumes"] == 2
    assert_same_run(run, baseline)
    # every process after the first started right after the checkpoint it resumed from and went on
    # without a gap or a repeat
    starts = resumed_from(run)
    for start, reported in zip(starts, segments(run)[1:]):
        assert start % 2 == 0 and reported[:1] in ([start + 1], [])
        assert reported == list(range(start + 1, start + 1 + len(reported))), (seed, kills, reported)
    assert segments(run)[-1][-1] == steps, (seed, kills)


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    run = tmp_path / "run"
    done = run_to_end(run, "train.max_steps=4")
    assert done.returncode == 0, done.stderr
    before = final_metrics(run)
    newest = run / "checkpoints" / "step_000004"
    state = newest / "state" / "actor" / "state.pt"
    os.truncate(state, state.stat().st_size // 2)  # a crash in the middle of writing it
    (run / "checkpoints" / "step_000006.partial").mkdir()
    done = run_to_end(run, "train.max_steps=5", resume=True)
    assert done.returncode == 0, done.stderr
    warnings = [e["message"] for e in events(run, "log") if e["level"] == "warning"]
    assert any(m.startswith("checkpoint step_000004: state/actor/state.pt has ") for m in warnings), warnings
    assert resumed_from(run) == [2] and segments(run)[-1] == [3, 4, 5]
    after = final_metrics(run)
    for step in (3, 4):
        assert after[step] == pytest.approx(before[step], rel=1e-5, abs=1e-7)
    assert newest_complete(run / "checkpoints").path.name == "step_000005"
    assert not list((run / "checkpoints").glob("*.partial"))


REWARD = """
from pathlib import Path

COUNT = Path(__file__).with_name("calls")


def reward(prompts, responses, labels):
    calls = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(calls))
    # the third rollout gets a reward float32 cannot hold: inf scores, NaN advantages
    return [1e39 if calls == 3 else float(len(r) % 3) for r in responses]
"""


@pytest.mark.parametrize("skips", [0, 1])
def test_nonfinite_rewards_stop_the_run_cleanly_or_skip_the_batch(tmp_path, skips):
    (tmp_path / "fn.py").write_text(REWARD)
    run = tmp_path / "run"
    done = run_to_end(run, "train.max_steps=3", 'reward.kind="function"', f'reward.function="{tmp_path / "fn.py"}:reward"',
                      "algo.reward_clip=0.0", f"checkpoint.nonfinite_skips={skips}")
    info = run_info(run)
    if skips:
        assert done.returncode == 0, done.stderr
        assert info["status"] == "finished"
        assert [e["step"] for e in events(run, "metric")] == [1, 2]
        [warning] = [e for e in events(run, "log") if e["level"] == "warning"]
        assert warning["step"] == 3 and "non-finite scores (128 of 128)" in warning["message"]
        assert newest_complete(run / "checkpoints").step == 3
        return
    assert done.returncode == 1
    assert info["status"] == "failed"
    assert info["reason"].startswith("step 3: non-finite scores (128 of 128), advantages"), info["reason"]
    assert "[checkpoint].nonfinite_skips = 0" in info["reason"]
    assert info["reason"].endswith("the last checkpoint is step 2; `--resume` continues from it")
    assert done.stderr.count("error: ") == 1 and "Traceback" not in done.stderr
    end = events(run)[-1]
    assert (end["type"], end["status"], end["reason"]) == ("end", "failed", info["reason"])
    assert [p.name for p in (run / "checkpoints").iterdir() if p.is_dir()] == ["step_000002"]
    assert newest_complete(run / "checkpoints").step == 2


def assert_refused_resumes(run: Path) -> None:
    """A changed preset and a live run are refused before anything is touched."""
    refused = run_to_end(run, "train.max_steps=2", "train.actor_lr=1e-3", resume=True)
    assert refused.returncode == 2
    assert "error: the preset differs from the one run run was started with:" in refused.stderr
    assert "[train].actor_lr: 0.0003 → 0.001   (changes the run)" in refused.stderr
    assert "Traceback" not in refused.stderr
    record = (run / "run.json").read_text()
    info = json.loads(record)
    info.update(status="running", pid=os.getpid(), pid_start=None)  # as if this process were the run
    (run / "run.json").write_text(json.dumps(info))
    refused = run_to_end(run, "train.max_steps=2", resume=True)
    assert refused.returncode == 2 and f"is still running (pid {os.getpid()})" in refused.stderr
    (run / "run.json").write_text(record)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path):
    """A real file-size limit (RLIMIT_FSIZE) fails the write as a full disk would; before that, a
    changed preset and a live run are refused."""
    run = tmp_path / "run"
    done = run_to_end(run, "train.max_steps=2")
    assert done.returncode == 0, done.stderr
    assert_refused_resumes(run)
    limit = 2 * 1024 * 1024  # more than the events file and the HF model, less than the optimizer state

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = run_to_end(run, "train.max_steps=4", resume=True, preexec_fn=small_files)
    assert done.returncode == 1, done.stderr
    info = run_info(run)
    assert info["status"] == "failed"
    assert info["reason"].startswith(f"could not write checkpoint step_000004 in {run / 'checkpoints'}: "), info["reason"]
    assert "the previous checkpoint step_000002 is intact" in info["reason"]
    assert (run / "checkpoints" / "latest").read_text() == "step_000002\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_000002"]
    done = run_to_end(run, "train.max_steps=4", resume=True)
    assert done.returncode == 0, done.stderr
    assert resumed_from(run) == [2, 2] and segments(run)[-1] == [3, 4]
    assert run_info(run)["status"] == "finished"


def test_the_tui_resumes_a_run_from_its_own_preset(tmp_path):
    from rlhf_tui.launcher import resume

    run = tmp_path / "run"
    done = run_to_end(run, "train.max_steps=2")
    assert done.returncode == 0, done.stderr
    launched = resume(run)
    assert launched.argv[-3:] == [str(run / "preset.toml"), "--resume", str(run)]
    assert launched.process.wait(timeout=300) == 0, (run / "console.log").read_text()
    info = run_info(run)
    assert (info["status"], info["resumes"], info["pid"]) == ("finished", 1, launched.process.pid)
    assert resumed_from(run) == [2] and segments(run)[-1] == []
