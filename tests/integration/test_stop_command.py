"""`rlhf-train stop RUN`: a running run stops gracefully; nothing else is ever signalled."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rlhf_train.cli import main
from rlhf_train.telemetry.control import is_rlhf_train_process
from tests.integration.conftest import LOCAL, TINY, events, run_info

pytestmark = pytest.mark.slow


def test_stop_a_running_run_and_refuse_a_finished_one(tmp_path, capsys):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_train.cli", TINY, "--run-dir", str(run), "--set", LOCAL],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((run / "events.jsonl").is_file() and events(run, "metric")):
        time.sleep(0.2)
    assert is_rlhf_train_process(proc.pid)
    assert main(["stop", str(run), "--wait", "60"]) == 0
    assert proc.wait(timeout=60) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"asked run run (pid {proc.pid}) to stop after its current step", "run run: stopped"]
    assert run_info(run)["status"] == "stopped"
    assert main(["stop", str(run)]) == 2
    assert capsys.readouterr().err.strip() == "error: run run is not running (status stopped)"


def test_a_lost_run_is_not_signalled(tmp_path, capsys):
    import json

    (tmp_path / "r").mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "r" / "run.json").write_text(json.dumps({"id": "r", "status": "running", "pid": sleeper.pid}))
        assert main(["stop", str(tmp_path / "r")]) == 2
        assert "its process" in capsys.readouterr().err
        assert sleeper.poll() is None, "a process that is not rlhf-train must not be signalled"
    finally:
        sleeper.kill()
