"""A real run of the tiny preset in a subprocess, watched live over its telemetry socket by real
clients: a fast reader, a frozen one, one that disconnects and resumes with since_seq, and
`iter_events` following the run; then the finished run replayed from events.jsonl."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rlhf_train.telemetry.client import iter_events
from rlhf_train.telemetry.protocol import Event, decode_event, read_events_file
from tests.integration.conftest import LOCAL
from tests.unit.test_telemetry_server import Viewer, check_stream, wait_until

REPO = Path(__file__).resolve().parents[2]
STEPS = 60
RESUME_AFTER_STEP = 10


def _wait_for_socket(run_dir: Path, proc: subprocess.Popen, stderr_path: Path, timeout: float = 180.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before serving telemetry:\n{stderr_path.read_text()}")
        try:
            path = json.loads((run_dir / "run.json").read_text()).get("socket")
        except (OSError, ValueError):
            path = None
        if path and os.path.exists(path):
            return Path(path)
        time.sleep(0.02)
    pytest.fail("run.json never named a live socket")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_live_run_streams_to_fast_frozen_and_resuming_viewers(tmp_path):
    run_dir = tmp_path / "run"
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "rlhf_train.cli", "presets/tiny-cpu.toml", "--run-dir",
                                 str(run_dir), "--set", f"train.max_steps={STEPS}", "--set", LOCAL],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        sock_path = _wait_for_socket(run_dir, proc, stderr_path)
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        fast = Viewer(sock_path)
        frozen = Viewer(sock_path, request=None, read=False)  # connects, never sends, never reads
        followed: list[Event] = []
        follower = threading.Thread(target=lambda: followed.extend(iter_events(run_dir, timeout=120)), daemon=True)
        follower.start()

        # a viewer that leaves after step RESUME_AFTER_STEP and comes back with since_seq
        first = Viewer(sock_path)

        def resume_point() -> int | None:
            for line in list(first.lines):
                event = decode_event(line)
                if event.type == "metric" and event.get("step") == RESUME_AFTER_STEP:
                    return event.seq
            return None

        wait_until(lambda: resume_point() is not None, timeout=300, what=f"metric step {RESUME_AFTER_STEP}")
        first.close()
        first_part = [decode_event(line) for line in first.lines]
        k = max(e.seq for e in first_part)
        assert k >= resume_point()
        second = Viewer(sock_path, request=json.dumps({"since_seq": k}).encode() + b"\n")

        assert proc.wait(timeout=300) == 0, stderr_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    file_events = read_events_file(run_dir / "events.jsonl")
    all_seqs = [e.seq for e in file_events]
    assert all_seqs == list(range(1, len(all_seqs) + 1))
    assert file_events[0].type == "hello" and file_events[-1].type == "end"

    fast_events = fast.wait_eof()
    received, dropped = check_stream(fast_events, all_seqs)
    assert fast_events[0].type == "hello"
    assert sorted({e.get("step") for e in fast_events if e.type == "metric"}) == list(range(1, STEPS + 1))
    assert fast_events[-1].type == "end" and fast_events[-1].get("status") == "finished"
    if dropped == 0:
        assert [line.decode() for line in fast.lines] == (run_dir / "events.jsonl").read_text().splitlines()

    # the resuming viewer: hello, then exactly what it had not seen, to the end
    second_events = second.wait_eof()
    assert second_events[0].type == "hello" and second_events[0].seq == 1
    assert [e.seq for e in second_events[1:]] == [s for s in all_seqs if s > k]
    assert [e.seq for e in first_part] == list(range(1, k + 1))  # and before leaving it had no gap

    # the frozen viewer held nothing up (the run exited 0); what its socket could hold is a clean
    # prefix of the stream (the server closes it after a short flush deadline, `end` or not)
    frozen.start_reading()
    frozen_events = frozen.wait_eof()
    assert frozen_events[0].type == "hello"
    seqs = [e.seq for e in frozen_events[1:]]
    covered = [s for e in frozen_events[1:] for s in range(e.get("first_dropped_seq", e.seq), e.seq + 1)]
    assert seqs == sorted(set(seqs)) and covered == all_seqs[1:len(covered) + 1]

    follower.join(60)
    assert not follower.is_alive()
    assert [e.seq for e in followed] == all_seqs and followed[-1].type == "end"

    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["socket"] == str(sock_path)
    assert not sock_path.exists()
    # the finished run replays from its file with the same client code, seq for seq
    assert [e.seq for e in iter_events(run_dir)] == all_seqs
    assert [e.seq for e in iter_events(run_dir, since_seq=k)] == [1] + [s for s in all_seqs if s > k]
