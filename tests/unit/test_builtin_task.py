"""Built-in synthetic tasks: deterministic prompts, exact rewards, vocabulary coverage."""

from __future__ import annotations

from collections import Counter

import pytest

from rlhf_train.models.tiny import TINY_VOCAB
from rlhf_train.rewards.builtin import BUILTIN_TASKS, get_task, response_words

ARITH = BUILTIN_TASKS["arith"]
COPY = BUILTIN_TASKS["copy"]


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_prompts_are_deterministic_and_extend_with_count(task):
    t = BUILTIN_TASKS[task]
    assert t.prompts(50, seed=3) == t.prompts(50, seed=3)
    assert t.prompts(20, seed=3) == t.prompts(50, seed=3)[:20]
    assert t.prompts(50, seed=3) != t.prompts(50, seed=4)
    assert all(set(r) == {"input", "label"} for r in t.prompts(10))
    assert t.prompts(0) == []
    with pytest.raises(ValueError, match="count must be >= 0"):
        t.prompts(-1)


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_every_word_is_in_the_tiny_vocabulary(task):
    vocab = set(TINY_VOCAB)
    for record in BUILTIN_TASKS[task].prompts(512, seed=0):
        assert set(record["input"].split()) <= vocab, record
        assert set(record["label"].split()) <= vocab, record


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_demonstrations_score_one(task):
    t = BUILTIN_TASKS[task]
    demos = t.demonstrations(64, seed=1)
    prompts, responses = [p for p, _ in demos], [r for _, r in demos]
    labels = [r["label"] for r in t.prompts(64, seed=1)]
    assert [p for p, _ in demos] == [r["input"] for r in t.prompts(64, seed=1)]
    assert t.score(prompts, responses, labels) == [1.0] * 64


def test_arith_prompts_are_correct_sums_with_uniform_answers():
    records = ARITH.prompts(2000, seed=0)
    for r in records:
        a, plus, b, eq = r["input"].split()
        assert (plus, eq) == ("+", "=") and int(a) + int(b) == int(r["label"]) <= 9
    counts = Counter(r["label"] for r in records)
    assert set(counts) == {str(d) for d in range(10)}
    assert min(counts.values()) > 150  # ~200 each


@pytest.mark.parametrize(
    ("response", "reward"),
    [
        ("8", 1.0),
        (" 8 ", 1.0),
        ("8 <eos>", 1.0),
        ("8 <eos> 3 3", 1.0),
        ("8<|im_end|>junk", 1.0),
        ("<pad> 8 <pad>", 1.0),
        ("8 3", 0.5),
        ("8 + 1", 0.5),
        ("3", 0.0),
        ("3 8", 0.0),
        ("", 0.0),
        ("<eos>", 0.0),
        ("08", 0.0),
    ],
)
def test_arith_score_exact(response, reward):
    assert ARITH.score(["3 + 5 ="], [response], ["8"]) == [reward]


@pytest.mark.parametrize(
    ("response", "reward"),
    [
        ("3 1 4", 1.0),
        ("3 1 4 <eos>", 1.0),
        ("3 1 5", 2 / 3),
        ("3", 1 / 3),
        ("1 4", 0.0),
        ("3 1 4 4", 0.8),
        ("9 9 9 9", 0.0),
    ],
)
def test_copy_score_exact(response, reward):
    assert COPY.score(["copy 3 1 4 :"], [response], ["3 1 4"]) == [pytest.approx(reward)]


def test_score_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="got 1 prompts, 2 responses, 1 labels"):
        ARITH.score(["1 + 1 ="], ["2", "2"], ["2"])


def test_response_words_cuts_at_end_markers():
    assert response_words("8 <eos> <pad>") == ["8"]
    assert response_words("4 </s> 5") == ["4"]
    assert response_words("<bos> 1 2") == ["1", "2"]


def test_get_task_unknown_lists_known():
    assert get_task("arith") is ARITH
    with pytest.raises(KeyError, match="unknown built-in task 'nope'; known tasks: arith, copy"):
        get_task("nope")
