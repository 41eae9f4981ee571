"""Python reward functions: ``reward.function = "path/to/file.py:name"``.

The named file is imported as a module (on each load, under a private name) and ``name`` is looked up in it.
Contract of the user's function::

    def name(prompts: list[str], responses: list[str], labels: list[str]) -> list[float] | torch.Tensor

called positionally with one entry per sample (``labels`` holds ``""`` where the dataset has no
label). It returns one finite number per response: a list/tuple of numbers (bools count as 0/1),
or a 1-D tensor/array (``[B, 1]`` is accepted and flattened).

Every failure is a :class:`RewardFunctionError` (a ``ValueError``) whose one-line message names the
file and function: file missing or not importable, name missing or not callable, a signature that
cannot take the three arguments, an exception raised by the function (wrapped, with its type and
message, and the index of the first sample that raises when scored alone), a wrong number of
rewards (expected vs got), a non-number or a non-finite value (with its sample index).
This module does not import torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import sys
from pathlib import Path
from typing import Any, Callable


class RewardFunctionError(ValueError):
    """A reward function could not be loaded, or returned something unusable; the message says which."""


class RewardFunction:
    """A loaded, validated reward function; call it like the user's function, get ``list[float]``."""

    def __init__(self, fn: Callable[..., Any], *, path: Path, name: str):
        self.fn = fn
        self.path = path
        self.name = name

    @property
    def where(self) -> str:
        """``'name' in 'path'`` -- how messages refer to this function."""
        return f"reward function {self.name!r} in '{self.path}'"

    def __repr__(self) -> str:
        return f"RewardFunction({self.path}:{self.name})"

    def __call__(self, prompts: list[str], responses: list[str], labels: list[str]) -> list[float]:
        """Call the function and return its rewards as ``list[float]`` of length ``len(responses)``;
        any failure or bad result raises :class:`RewardFunctionError`."""
        expected = len(responses)
        try:
            result = self.fn(prompts, responses, labels)
        except Exception as error:  # noqa: BLE001 -- any user exception is reported the same way
            raise RewardFunctionError(f"{self.where} raised {type(error).__name__}: {_one_line(error)}"
                                      f"{self._culprit(prompts, responses, labels)}") from error
        rewards = self._to_floats(result)
        if len(rewards) != expected:
            raise RewardFunctionError(
                f"{self.where} returned {len(rewards)} rewards for {expected} responses (expected {expected}, got {len(rewards)})"
            )
        for index, value in enumerate(rewards):
            if not math.isfinite(value):
                raise RewardFunctionError(f"{self.where} returned a non-finite reward {value} at index {index}")
        return rewards

    def _culprit(self, prompts: list[str], responses: list[str], labels: list[str]) -> str:
        """Where a failing batch fails: the first sample that raises when scored alone, as
        `` at sample i (prompt ..., response ..., label ...)``; empty when none does."""
        for index, sample in enumerate(zip(prompts, responses, labels)):
            try:
                self.fn(*([field] for field in sample))
            except Exception:  # noqa: BLE001 -- looking for the sample, the error is already reported
                prompt, response, label = (_excerpt(field) for field in sample)
                return f" at sample {index} (prompt {prompt}, response {response}, label {label})"
        return ""

    def _to_floats(self, result: Any) -> list[float]:
        if hasattr(result, "tolist") and hasattr(result, "ndim"):  # torch.Tensor or numpy array
            shape = tuple(result.shape)
            if len(shape) == 2 and shape[1] == 1:
                result = result.reshape(-1)
            elif len(shape) != 1:
                raise RewardFunctionError(f"{self.where} returned an array of shape {shape}; return a 1-D list or tensor")
            if hasattr(result, "detach"):
                result = result.detach().float().cpu()
            result = result.tolist()
        if not isinstance(result, (list, tuple)):
            raise RewardFunctionError(
                f"{self.where} returned {type(result).__name__}; return a list of floats or a 1-D tensor"
            )
        rewards = []
        for index, value in enumerate(result):
            if isinstance(value, bool):
                value = float(value)
            if hasattr(value, "item") and not isinstance(value, (int, float)):
                value = value.item()  # numpy / torch scalars
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise RewardFunctionError(
                    f"{self.where} returned a {type(value).__name__} at index {index}; rewards must be numbers"
                )
            rewards.append(float(value))
        return rewards


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "(no message)"


def parse_function_ref(ref: str) -> tuple[Path, str]:
    """Split ``"path/to/file.py:name"`` into ``(absolute path, name)`` without touching the file."""
    if not isinstance(ref, str) or ":" not in ref:
        raise RewardFunctionError(f"reward function {ref!r} must be written path/to/file.py:function_name")
    file_part, _, name = ref.rpartition(":")
    if not file_part or not name.isidentifier():
        raise RewardFunctionError(f"reward function {ref!r} must be written path/to/file.py:function_name")
    return Path(file_part).expanduser().resolve(), name


def load_reward_function(ref: str) -> RewardFunction:
    """Import the file of ``ref`` (``"path/to/file.py:name"``) and return its function, validated:
    the file exists and imports, ``name`` exists, is callable and accepts three positional arguments."""
    path, name = parse_function_ref(ref)
    if not path.is_file():
        raise RewardFunctionError(f"reward function file '{path}' does not exist (from {ref!r}); check reward.function")
    module_name = "_rlhf_reward_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RewardFunctionError(f"reward function file '{path}' cannot be imported; it must be a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # registered while executing, as for a normal import (dataclasses need it)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 -- report any import-time failure
        sys.modules.pop(module_name, None)
        raise RewardFunctionError(
            f"importing reward function file '{path}' raised {type(error).__name__}: {_one_line(error)}"
        ) from error
    if not hasattr(module, name):
        available = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise RewardFunctionError(
            f"reward function file '{path}' has no {name!r}; callables there: {', '.join(available) or 'none'}"
        )
    fn = getattr(module, name)
    if not callable(fn):
        raise RewardFunctionError(f"{name!r} in '{path}' is a {type(fn).__name__}, not a function")
    try:
        inspect.signature(fn).bind([], [], [])
    except TypeError:
        raise RewardFunctionError(
            f"reward function {name!r} in '{path}' must accept (prompts, responses, labels); its signature is {inspect.signature(fn)}"
        ) from None
    except ValueError:
        pass  # builtins without a signature: checked when called
    return RewardFunction(fn, path=path, name=name)
