"""Python reward-function hook: loading, calling, and every error naming the file and function."""

from __future__ import annotations

import textwrap

import pytest

from rlhf_train.rewards.function import RewardFunctionError, load_reward_function, parse_function_ref

PROMPTS, RESPONSES, LABELS = ["1 + 1 =", "2 + 2 ="], ["2", "5"], ["2", "4"]


def write(tmp_path, body: str, name: str = "rewards.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_loads_and_calls_list_function(tmp_path):
    path = write(tmp_path, """
        def exact(prompts, responses, labels):
            return [float(r == l) for r, l in zip(responses, labels)]
    """)
    fn = load_reward_function(f"{path}:exact")
    assert fn(PROMPTS, RESPONSES, LABELS) == [1.0, 0.0]
    assert fn.name == "exact" and fn.path == path.resolve()


@pytest.mark.parametrize(
    "expr",
    ["torch.tensor([0.5, -1.0])", "torch.tensor([[0.5], [-1.0]])", "(0.5, -1)", "np.array([0.5, -1.0])", "[np.float32(0.5), -1]"],
)
def test_accepts_tensors_tuples_and_arrays(tmp_path, expr):
    path = write(tmp_path, f"""
        import numpy as np
        import torch
        def fn(prompts, responses, labels):
            return {expr}
    """)
    assert load_reward_function(f"{path}:fn")(PROMPTS, RESPONSES, LABELS) == [0.5, -1.0]


def test_bools_count_as_zero_one(tmp_path):
    path = write(tmp_path, "def fn(p, r, l):\n    return [True, False]\n")
    assert load_reward_function(f"{path}:fn")(PROMPTS, RESPONSES, LABELS) == [1.0, 0.0]


def test_bad_reference_format():
    with pytest.raises(RewardFunctionError, match="must be written path/to/file.py:function_name"):
        parse_function_ref("rewards.py")
    with pytest.raises(RewardFunctionError, match="must be written"):
        parse_function_ref("rewards.py:not-a-name")


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(RewardFunctionError, match=f"reward function file '{missing}' does not exist"):
        load_reward_function(f"{missing}:fn")


def test_import_error_names_the_file(tmp_path):
    path = write(tmp_path, "raise RuntimeError('boom at import')\n")
    with pytest.raises(RewardFunctionError, match=f"importing reward function file '{path}' raised RuntimeError: boom at import"):
        load_reward_function(f"{path}:fn")


def test_missing_name_lists_callables(tmp_path):
    path = write(tmp_path, "def score(p, r, l):\n    return []\ndef other(p, r, l):\n    return []\n")
    with pytest.raises(RewardFunctionError, match=f"'{path}' has no 'fn'; callables there: other, score"):
        load_reward_function(f"{path}:fn")


def test_not_callable(tmp_path):
    path = write(tmp_path, "fn = 3\n")
    with pytest.raises(RewardFunctionError, match=f"'fn' in '{path}' is a int, not a function"):
        load_reward_function(f"{path}:fn")


def test_wrong_signature(tmp_path):
    path = write(tmp_path, "def fn(responses):\n    return []\n")
    with pytest.raises(RewardFunctionError, match=r"'fn' in .* must accept \(prompts, responses, labels\); its signature is \(responses\)"):
        load_reward_function(f"{path}:fn")


def test_raising_function_is_wrapped_with_name_and_exception(tmp_path):
    path = write(tmp_path, "def fn(p, r, l):\n    raise KeyError('label')\n")
    fn = load_reward_function(f"{path}:fn")
    with pytest.raises(RewardFunctionError, match=f"reward function 'fn' in '{path}' raised KeyError: 'label'") as info:
        fn(PROMPTS, RESPONSES, LABELS)
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("return [1.0]", r"returned 1 rewards for 2 responses \(expected 2, got 1\)"),
        ("return [1.0, float('nan')]", "returned a non-finite reward nan at index 1"),
        ("return torch.tensor([1.0, float('inf')])", "returned a non-finite reward inf at index 1"),
        ("return [1.0, 'x']", "returned a str at index 1; rewards must be numbers"),
        ("return 1.0", "returned float; return a list of floats or a 1-D tensor"),
        ("return torch.ones(2, 2)", r"returned an array of shape \(2, 2\)"),
    ],
)
def test_bad_results_name_the_function(tmp_path, body, needle):
    path = write(tmp_path, f"import torch\ndef fn(prompts, responses, labels):\n    {body}\n")
    fn = load_reward_function(f"{path}:fn")
    with pytest.raises(RewardFunctionError, match=f"reward function 'fn' in '{path}' {needle}"):
        fn(PROMPTS, RESPONSES, LABELS)


def test_module_level_dataclass_works(tmp_path):
    path = write(tmp_path, """
        from dataclasses import dataclass
        @dataclass
        class Weights:
            hit: float = 2.0
        def fn(prompts, responses, labels):
            return [Weights().hit * (r == l) for r, l in zip(responses, labels)]
    """)
    assert load_reward_function(f"{path}:fn")(PROMPTS, RESPONSES, LABELS) == [2.0, 0.0]


def test_a_raising_batch_names_the_first_sample_that_raises_alone(tmp_path):
    path = write(tmp_path, """
        def fn(prompts, responses, labels):
            return [1.0 / int(l) for l in labels]
    """)
    fn = load_reward_function(f"{path}:fn")
    with pytest.raises(RewardFunctionError) as info:
        fn(["a", "b", "c"], ["x", "y", "z"], ["2", "0", "x"])
    assert str(info.value) == (f"reward function 'fn' in '{path.resolve()}' raised ZeroDivisionError: float division by zero "
                               "at sample 1 (prompt 'b', response 'y', label '0')")


def test_a_batch_only_failure_names_no_sample(tmp_path):
    path = write(tmp_path, """
        def fn(prompts, responses, labels):
            if len(prompts) > 1:
                raise ValueError("batch too big")
            return [0.0]
    """)
    with pytest.raises(RewardFunctionError, match=r"raised ValueError: batch too big$"):
        load_reward_function(f"{path}:fn")(PROMPTS, RESPONSES, LABELS)
