"""Errors that mean "the input is wrong" (a path, a dataset, a reward function, the machine):
the run ends with their one-line message, status `failed`, and no traceback on the terminal."""

from __future__ import annotations


class RunError(RuntimeError):
    """Something about the run's inputs or this machine that the user must fix; the message says what."""


def user_errors() -> tuple[type[BaseException], ...]:
    from rlhf_train.data.prompts import DatasetError
    from rlhf_train.models.loading import ModelLoadError
    from rlhf_train.rewards.function import RewardFunctionError

    return RunError, ModelLoadError, DatasetError, RewardFunctionError
