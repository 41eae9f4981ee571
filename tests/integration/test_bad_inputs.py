"""Bad inputs end a run with one clear line naming the problem, exit code ≠ 0, no traceback on the
terminal, and a kept run directory whose run.json says `failed` and why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import LOCAL, TINY, run_info

pytestmark = pytest.mark.slow

QUICK = ["--set", "train.max_steps=2", "--set", "checkpoint.save_steps=1", "--set", LOCAL]


def run_subprocess(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlhf_train.cli", TINY, "--run-dir", str(run_dir), *QUICK, *args],
                          capture_output=True, text=True, timeout=300)


def assert_failed_cleanly(proc: subprocess.CompletedProcess, run_dir: Path, *needles: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    [error_line] = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    for needle in needles:
        assert needle in error_line, error_line
    info = run_info(run_dir)
    assert info["status"] == "failed" and info["reason"] == error_line.removeprefix("error: ")
    assert (run_dir / "preset.toml").is_file() and (run_dir / "train.log").is_file()
    assert "Traceback" in (run_dir / "train.log").read_text(), "the traceback is kept for debugging, in the log"
    last = json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])
    assert (last["type"], last["status"]) == ("end", "failed")
    return error_line


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def function_reward(tmp_path: Path, body: str) -> list[str]:
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"input": f"{a} + 1 =", "label": str(a + 1)} for a in range(16)])
    (tmp_path / "reward.py").write_text(body)
    return ["--set", f'data.prompt_data="{data}"', "--set", 'reward.kind="function"',
            "--set", f'reward.function="{tmp_path / "reward.py"}:score"']


def test_missing_model_path(tmp_path):
    proc = run_subprocess(tmp_path / "run", "--set", 'model.actor="/no/such/model"')
    assert_failed_cleanly(proc, tmp_path / "run", "/no/such/model")


def test_dataset_record_without_the_input_key(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"input": "1 + 1 =", "label": "2"}, {"question": "2 + 2 =", "label": "4"}])
    proc = run_subprocess(tmp_path / "run", "--set", f'data.prompt_data="{data}"', "--set", 'reward.kind="function"',
                          "--set", 'reward.function="r.py:score"')
    assert_failed_cleanly(proc, tmp_path / "run", str(data), "'input'", "line 2", "question")


def test_empty_dataset(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    proc = run_subprocess(tmp_path / "run", "--set", f'data.prompt_data="{data}"', "--set", 'reward.kind="function"',
                          "--set", 'reward.function="r.py:score"')
    assert_failed_cleanly(proc, tmp_path / "run", str(data), "no records")


def test_reward_function_that_raises(tmp_path):
    args = function_reward(tmp_path, "def score(prompts, responses, labels):\n    raise RuntimeError('judge is down')\n")
    proc = run_subprocess(tmp_path / "run", *args)
    assert_failed_cleanly(proc, tmp_path / "run", "'score'", "RuntimeError", "judge is down")


def test_reward_function_with_the_wrong_length(tmp_path):
    args = function_reward(tmp_path, "def score(prompts, responses, labels):\n    return [1.0]\n")
    proc = run_subprocess(tmp_path / "run", *args)
    assert_failed_cleanly(proc, tmp_path / "run", "'score'", "expected 128", "got 1")


def test_gpu_preset_on_a_machine_without_gpu(tmp_path):
    preset = str(Path(TINY).with_name("gpu1-hybrid-0.5b.toml"))
    proc = subprocess.run([sys.executable, "-m", "rlhf_train.cli", preset, "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert_failed_cleanly(proc, tmp_path / "run", "[placement].gpus_per_node = 1", "no CUDA device")


def test_a_failure_after_a_checkpoint_keeps_the_checkpoint(tmp_path):
    args = function_reward(tmp_path, "calls = []\n"
                                     "def score(prompts, responses, labels):\n"
                                     "    calls.append(1)\n"
                                     "    if len(calls) > 1:\n"
                                     "        raise ValueError('second call fails')\n"
                                     "    return [0.5] * len(responses)\n")
    proc = run_subprocess(tmp_path / "run", *args)
    assert_failed_cleanly(proc, tmp_path / "run", "second call fails")
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000001"
    assert (checkpoint / "config.json").is_file() and (checkpoint / "model.safetensors").is_file()


def test_fewer_prompts_than_one_rollout_batch(tmp_path):
    data = write_jsonl(tmp_path / "few.jsonl", [{"input": "1 + 1 =", "label": "2"}] * 3)
    proc = run_subprocess(tmp_path / "run", "--set", f'data.prompt_data="{data}"', "--set", 'reward.kind="function"',
                          "--set", 'reward.function="r.py:score"')
    assert_failed_cleanly(proc, tmp_path / "run", "3 prompts", "rollout_batch_size = 16")
