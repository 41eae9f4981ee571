"""The checkpoint store, the state a checkpoint holds, the resume rules and stale-run detection,
without a trainer (the runs themselves: tests/integration/test_resume*.py)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rlhf_train.checkpoint import store
from rlhf_train.checkpoint.faults import nonfinite_stats, nonfinite_tensors
from rlhf_train.checkpoint.resume import check_resumable_preset, preset_changes
from rlhf_train.checkpoint.state import TrainerState, load_rng, save_rng
from rlhf_train.config.schema import Preset
from rlhf_train.config.writer import preset_to_toml
from rlhf_train.data.prompts import PromptRecord
from rlhf_train.errors import RunError
from rlhf_train.experience import ExperienceBatch
from rlhf_train.roles import Optimized
from rlhf_train.telemetry.rundir import RunDir, process_start_ticks
from rlhf_train.telemetry.runs import run_alive, summarise
from rlhf_train.trainer import prompt_batches
from tests.conftest import REPO


def filler(size: int):
    def fill(directory: Path) -> None:
        (directory / "state").mkdir()
        (directory / "state" / "blob.bin").write_bytes(b"x" * size)
        (directory / "model.txt").write_text("weights")
    return fill


def test_write_is_complete_named_latest_and_keeps_the_newest(tmp_path):
    for step in (2, 4, 6):
        path = store.write(tmp_path, step, keep=2, fill=filler(10))
        assert path == tmp_path / f"step_{step:06d}"
        assert (tmp_path / "latest").read_text() == f"step_{step:06d}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000004", "step_000006"]
    manifest = json.loads((tmp_path / "step_000006" / "manifest.json").read_text())
    assert manifest == {"model.txt": 7, "state/blob.bin": 10}
    assert store.newest_complete(tmp_path).path == tmp_path / "step_000006"


def test_a_failed_write_leaves_the_previous_checkpoint_and_latest(tmp_path):
    store.write(tmp_path, 2, keep=3, fill=filler(10))

    def broken(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"y" * 5)
        raise OSError(28, "No space left on device")

    with pytest.raises(store.CheckpointWriteError) as caught:
        store.write(tmp_path, 4, keep=3, fill=broken)
    message = str(caught.value)
    assert "step_000004" in message and "No space left on device" in message
    assert "step_000002 is intact" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000002"]
    assert (tmp_path / "latest").read_text() == "step_000002\n"


def test_a_worker_error_during_the_write_is_passed_on_unchanged(tmp_path):
    def failing(directory: Path) -> None:
        raise RunError("the actor worker (rank 1) died")

    with pytest.raises(RunError, match=r"^the actor worker \(rank 1\) died$"):
        store.write(tmp_path, 2, keep=1, fill=failing)
    assert not list(tmp_path.glob("step_*"))


@pytest.mark.parametrize("damage", ["truncate", "no-manifest", "missing-file"])
def test_newest_complete_skips_a_damaged_checkpoint(tmp_path, damage):
    store.write(tmp_path, 2, keep=3, fill=filler(100))
    newest = store.write(tmp_path, 4, keep=3, fill=filler(100))
    if damage == "truncate":
        os.truncate(newest / "state" / "blob.bin", 40)
    elif damage == "no-manifest":
        (newest / "manifest.json").unlink()
    else:
        (newest / "model.txt").unlink()
    (tmp_path / "step_000006.partial").mkdir()  # a crash mid-write
    found = store.newest_complete(tmp_path)
    assert found.path == tmp_path / "step_000002" and found.step == 2
    assert len(found.skipped) == 1 and found.skipped[0].startswith("step_000004: ")
    # the next write clears what the crash left
    store.write(tmp_path, 4, keep=3, fill=filler(100))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000002", "step_000004"]


def test_a_full_disk_seen_through_a_real_file_size_limit(tmp_path):
    """RLIMIT_FSIZE in a child process: a write past it fails with EFBIG (Python ignores SIGXFSZ),
    as a full disk would; the checkpoint before it stays the newest complete one."""
    script = textwrap.dedent(f"""
        import resource, sys, torch
        from pathlib import Path
        from rlhf_train.checkpoint import store
        root = Path({str(tmp_path)!r})
        store.write(root, 2, keep=3, fill=lambda d: torch.save(torch.zeros(1000), d / "state.pt"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        try:
            store.write(root, 4, keep=3, fill=lambda d: torch.save(torch.zeros(100_000), d / "state.pt"))
        except store.CheckpointWriteError as exc:
            print(exc)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "could not write checkpoint step_000004" in proc.stdout
    assert "the previous checkpoint step_000002 is intact" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000002"]
    assert store.newest_complete(tmp_path).path.name == "step_000002"
    assert torch.load(tmp_path / "step_000002" / "state.pt").shape == (1000,)


def test_prompt_batches_from_a_position_continue_the_same_order():
    prompts = [PromptRecord(prompt=str(i)) for i in range(10)]  # 3 batches of 3 per episode
    whole = list(itertools.islice(prompt_batches(prompts, 3, seed=5), 12))
    for start in (0, 1, 3, 4, 7):
        assert list(itertools.islice(prompt_batches(prompts, 3, seed=5, start=start), 12 - start)) == whole[start:]


def test_trainer_state_and_generators_round_trip(tmp_path):
    state = TrainerState(step=6, batches=6, episode=1, kl_coef=0.0123, seq=77, skipped=1,
                         reward_normalizer={"count": 48, "mean": 0.25, "m2": 3.5})
    state.save(tmp_path)
    assert TrainerState.load(tmp_path) == state
    import random

    import numpy as np

    save_rng(tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)
    load_rng(tmp_path / "rng.pt")
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_local_optimizer_state_resumes_the_same_updates(tmp_path):
    from rlhf_train.config.schema import TrainConfig

    train = TrainConfig(train_batch_size=2, micro_train_batch_size=2, actor_lr=0.1, lr_warmup_ratio=0.5,
                        lr_scheduler="cosine_with_min_lr")
    torch.manual_seed(0)
    data = [torch.randn(4, 3) for _ in range(4)]

    def make() -> Optimized:
        torch.manual_seed(1)
        return Optimized(torch.nn.Linear(3, 1), 0.1, train, total_steps=4)

    def update(model: Optimized, x: torch.Tensor) -> None:
        model.backward(model(x).pow(2).mean())
        model.step()

    whole = make()
    for x in data:
        update(whole, x)
    first = make()
    for x in data[:2]:
        update(first, x)
    first.save_state(tmp_path)
    resumed = make()
    resumed.load_state(tmp_path)
    assert resumed.lr == first.lr
    for x in data[2:]:
        update(resumed, x)
    for a, b in zip(whole.module.parameters(), resumed.module.parameters()):
        assert torch.equal(a, b)


def _run_dir(tmp_path: Path, preset: Preset) -> Path:
    (tmp_path / "preset.toml").write_text(preset_to_toml(preset))
    return tmp_path


def test_harmless_preset_changes_are_allowed_and_listed(tmp_path):
    old = Preset.model_validate({"train": {"lr_scheduler": "constant", "lr_warmup_ratio": 0.0, "max_steps": 4}})
    new = old.model_copy(update={"train": old.train.model_copy(update={"max_steps": 8}),
                                 "checkpoint": old.checkpoint.model_copy(update={"save_steps": 2})})
    assert check_resumable_preset(_run_dir(tmp_path, old), new) == [
        "[train].max_steps: 4 → 8", "[checkpoint].save_steps: 0 → 2"]
    assert check_resumable_preset(tmp_path, old) == []


def test_a_preset_change_that_alters_the_run_is_refused_with_the_diff(tmp_path):
    old = Preset.model_validate({"train": {"max_steps": 4}})  # cosine schedule: its length matters
    new = old.model_copy(update={"train": old.train.model_copy(update={"max_steps": 8, "actor_lr": 1e-3}),
                                 "telemetry": old.telemetry.model_copy(update={"samples_per_step": 0})})
    with pytest.raises(RunError) as caught:
        check_resumable_preset(_run_dir(tmp_path, old), new)
    message = str(caught.value)
    assert "[train].max_steps: 4 → 8   (changes the run)" in message
    assert "[train].actor_lr: 1e-06 → 0.001   (changes the run)" in message
    assert "[telemetry].samples_per_step: 2 → 0\n" in message
    assert [(k, ok) for k, _, _, ok in preset_changes(old, new)] == [
        ("train.max_steps", False), ("train.actor_lr", False), ("telemetry.samples_per_step", True)]


def test_a_running_record_of_a_dead_or_reused_pid_is_lost(tmp_path):
    run = RunDir.create(Preset(), tmp_path / "run")
    info = json.loads((run.path / "run.json").read_text())
    assert info["pid_start"] == process_start_ticks(os.getpid())
    assert run_alive(info) and summarise(run.path).status == "running"
    run.info.pid_start = info["pid_start"] - 1  # the same pid, another process (pid reuse)
    run.write_info()
    assert summarise(run.path).status == "lost"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run.info.pid, run.info.pid_start = child.pid, None
    run.write_info()
    assert summarise(run.path).status == "lost"


def test_nonfinite_values_are_named():
    batch = ExperienceBatch(sequences=torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 3),
                            action_mask=torch.ones(2, 2), scores=torch.tensor([1.0, float("inf")]),
                            advantages=torch.tensor([[float("nan"), 0.0], [float("nan"), 1.0]]),
                            returns=torch.zeros(2, 2))
    assert nonfinite_tensors(batch) == ["scores (1 of 2)", "advantages (2 of 4)"]
    assert nonfinite_stats({"train/policy_loss": float("nan"), "train/kl": 0.1, "g": float("-inf")}) == [
        "g = -inf", "train/policy_loss = nan"]
