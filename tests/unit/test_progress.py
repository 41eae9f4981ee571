"""Headless progress: plain lines when stderr is not a terminal."""

from __future__ import annotations

from rlhf_train.progress import StepProgress, summary


def test_summary_formats_and_marks_missing_values():
    assert summary({"reward/mean": 0.41234, "train/kl": 0.00213, "train/policy_loss": -0.011, "perf/step_s": 0.4567}) \
        == "reward 0.412  kl 0.0021  loss -0.0110  s/step 0.46"
    assert summary({"reward/mean": None, "other": 1.0}) == "reward N/A"


def test_plain_lines_with_eta(capsys, monkeypatch):
    clock = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr("rlhf_train.progress.time.monotonic", lambda: next(clock))
    progress = StepProgress(total=4, title="t", tty=False)
    progress.start()
    progress.advance(1, {"reward/mean": 0.5})
    progress.advance(2, {"reward/mean": 0.75, "perf/step_s": 10.0})
    progress.close()
    assert capsys.readouterr().err.splitlines() == [
        "step 1/4  reward 0.500  ETA 0m30s",
        "step 2/4  reward 0.750  s/step 10.00  ETA 0m20s",
    ]
