"""Runs of the tiny preset with `[reward].kind = "remote"`: a flaky server is retried and counted, a
hanging one fails the step in bounded time with a clear `end` reason, and the preset learns with its
reward served by `rlhf-train serve-rm` in another process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import REPO, events, metric_series, run_cli, run_info
from tests.integration.test_learning import first_and_last_tenth
from tests.unit.test_reward_remote import PlainServer


def remote(url: str, *extra: str) -> list[str]:
    return ['reward.kind="remote"', f'reward.urls="{url}"', *extra]



def test_server_failing_twice_is_retried_counted_and_the_run_finishes(tmp_path):
    server = PlainServer(["500", "500"])  # then answers (reward = len(query))
    try:
        code = run_cli(tmp_path / "run", "train.max_steps=3", *remote(server.url), "reward.backoff_s=0.01")
    finally:
        server.close()
    assert code == 0
    assert run_info(tmp_path / "run")["status"] == "finished"
    assert metric_series(tmp_path / "run", "reward/remote_retries") == [2.0, 0.0, 0.0]
    assert metric_series(tmp_path / "run", "reward/remote_failures") == [2.0, 0.0, 0.0]
    assert len(server.requests) == 5
    warnings = [e for e in events(tmp_path / "run", "log") if e.get("source") == "reward"]
    assert [e["level"] for e in warnings] == ["warning", "warning"]
    assert all("HTTP 500: 'internal trouble'" in e["message"] for e in warnings)


def test_hanging_server_fails_the_step_after_timeout_and_retries(tmp_path):
    server = PlainServer(default="hang")
    try:
        code = run_cli(tmp_path / "run", "train.max_steps=3", *remote(server.url), "reward.timeout_s=0.4",
                       "reward.retries=2", "reward.backoff_s=0.1", "reward.jitter=0.0")
        arrivals = list(server.arrivals)
    finally:
        server.close()
    assert code == 1
    run = tmp_path / "run"
    end = events(run, "end")[-1]
    assert end["status"] == "failed"
    assert re.match(r"remote reward failed after 3 attempt\(s\) \(timeout 0.4 s each, \[reward\].retries = 2\): "
                    r"http://127.0.0.1:\d+/score: no answer within 0.4 s", end["reason"]), end["reason"]
    worst = 0.4 * 3 + 0.1 + 0.2
    assert len(arrivals) == 3
    assert worst - 0.05 <= end["t"] - arrivals[0] <= worst + 1.5
    info = run_info(run)
    assert info["status"] == "failed" and info["reason"] == end["reason"]
    for name in ("preset.toml", "events.jsonl", "train.log", "run.json"):
        assert (run / name).is_file(), name
    assert metric_series(run, "reward/mean") == []  # the first step never finished


@pytest.mark.slow
def test_tiny_preset_learns_with_its_reward_served_by_serve_rm(tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "rlhf_train.cli", "serve-rm", "--task", "arith", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = server.stdout.readline()
        url = re.search(r"on (http://127\.0\.0\.1:\d+/get_reward)$", line.strip())
        assert url, (line, server.stderr.read() if server.poll() is not None else "")
        started = time.monotonic()
        assert run_cli(tmp_path / "run", *remote(url.group(1)), "checkpoint.save_steps=0") == 0
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(10)
    assert server.returncode == 0  # SIGTERM: a clean stop
    rewards = metric_series(tmp_path / "run", "reward/mean")
    first, last = first_and_last_tenth(rewards)
    print(f"\ntiny-cpu, reward via serve-rm: {len(rewards)} steps in {elapsed:.0f} s; "
          f"reward first 10% {first:.3f} → last 10% {last:.3f}")
    assert len(rewards) == 300
    assert last - first >= 0.3
    assert sum(metric_series(tmp_path / "run", "reward/remote_failures")) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
