"""The TUI's launcher on the real trainer: detached start, start-up failures, forced stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf_train.config.issues import PresetInvalid
from rlhf_train.telemetry.control import request_stop
from rlhf_train.telemetry.runs import summarise
from rlhf_tui.launcher import CONSOLE_LOG, LaunchFailed, Launched, console_error, force_stop, launch, wait_started

from .conftest import LOCAL, TINY, run_info

pytestmark = pytest.mark.slow


def tiny(tmp_path: Path, max_steps: int) -> tuple[str, ...]:
    return (f"run.output_dir={str(tmp_path / 'runs')!r}", f"train.max_steps={max_steps}", LOCAL)


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def launched_runs():
    runs: list[Launched] = []
    yield runs
    for run in runs:
        if run.process.poll() is None:
            os.killpg(run.pid, 9)
            run.process.wait(timeout=30)


def test_launch_runs_the_headless_command_in_its_own_session(tmp_path, launched_runs):
    run = launch(Path(TINY), tiny(tmp_path, 3))
    launched_runs.append(run)
    assert run.run_dir.parent == tmp_path / "runs" and run.run_dir.name.startswith("tiny-cpu-")
    assert run.argv[:4] == [sys.executable, "-m", "rlhf_train.cli", TINY]
    assert run.argv[4:] == ["--run-dir", str(run.run_dir), "--set", tiny(tmp_path, 3)[0], "--set", "train.max_steps=3",
                            "--set", LOCAL]
    assert os.getsid(run.pid) == run.pid != os.getsid(0), "the run leads its own session"
    wait_started(run)
    assert run_info(run.run_dir)["pgid"] == run.pid
    assert run.process.wait(timeout=120) == 0
    wait_for(lambda: run.exit_code == 0, 5, "the reaper to record the exit code")
    assert run_info(run.run_dir)["status"] == "finished"
    assert f"run finished: {run.run_dir}" in (run.run_dir / CONSOLE_LOG).read_text()


def test_two_launches_in_one_second_get_their_own_directories(tmp_path, launched_runs):
    first = launch(Path(TINY), tiny(tmp_path, 1))
    second = launch(Path(TINY), tiny(tmp_path, 1))
    launched_runs += [first, second]
    assert first.run_dir != second.run_dir
    assert first.process.wait(timeout=120) == 0 and second.process.wait(timeout=120) == 0


def test_an_invalid_preset_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(PresetInvalid) as err:
        launch(Path(TINY), (*tiny(tmp_path, 1), "rollout.n_samples_per_prompt=0"))
    assert "[rollout].n_samples_per_prompt" in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_a_process_that_dies_before_run_json_is_a_launch_failure_with_its_error(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    with (run_dir / CONSOLE_LOG).open("wb") as console:
        proc = subprocess.Popen([sys.executable, "-c", "print('loading'); print('error: no such thing'); "
                                 "print('bye'); raise SystemExit(2)"], stdout=console, stderr=subprocess.STDOUT)
    with pytest.raises(LaunchFailed) as err:
        wait_started(Launched(run_dir=run_dir, argv=[], process=proc), timeout_s=30)
    assert str(err.value) == f"the run did not start: error: no such thing (output in {run_dir / CONSOLE_LOG})"


def test_console_error_falls_back_to_the_last_line(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("one\n\ntwo  \n\n")
    assert console_error(log) == "two"
    assert console_error(tmp_path / "missing.log") == ""


def test_force_stop_after_a_graceful_request_ends_the_process_group(tmp_path, launched_runs):
    run = launch(Path(TINY), tiny(tmp_path, 100000))
    launched_runs.append(run)
    wait_started(run)
    wait_for(lambda: (run.run_dir / "checkpoints").is_dir() and b'"metric"' in
             (run.run_dir / "events.jsonl").read_bytes(), 120, "the first step")
    os.kill(run.pid, 19)  # SIGSTOP: a run stuck mid-step never honours the graceful request
    request_stop(run.run_dir)
    assert force_stop(run.run_dir, grace_s=1.0) == "killed"
    assert run.process.wait(timeout=10) == -9
    with pytest.raises(ProcessLookupError):
        os.killpg(run.pid, 0)
    assert summarise(run.run_dir).status == "lost"
    assert (run.run_dir / "events.jsonl").stat().st_size > 0


def test_force_stop_terminates_a_run_that_takes_sigterm(tmp_path, launched_runs):
    run = launch(Path(TINY), tiny(tmp_path, 100000))
    launched_runs.append(run)
    wait_started(run)
    request_stop(run.run_dir)  # the first SIGTERM is the graceful request; the group's SIGTERM then ends it
    assert force_stop(run.run_dir, grace_s=30.0) == "terminated"
    assert run.process.wait(timeout=10) in (0, -15)
