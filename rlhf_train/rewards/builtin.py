"""Built-in synthetic tasks with verifiable rewards in [0, 1], for runs that need no data or reward model.

Each task is a :class:`BuiltinTask` in :data:`BUILTIN_TASKS`, addressed as ``builtin:<name>`` by the
data loader (``rlhf_train.data.prompts``). A task provides

* ``prompts(count, seed) -> list[dict]`` -- ``count`` records ``{"input": prompt text, "label": answer}``,
  a pure function of ``(count, seed)``;
* ``score(prompts, responses, labels) -> list[float]`` -- one reward in [0, 1] per response (the
  ``prompts`` argument is accepted for the reward-function signature and not needed);
* ``demonstrations(count, seed) -> list[tuple[str, str]]`` -- ``(prompt, ideal response)`` pairs for an
  optional supervised warm-up; the response is the bare answer, the caller appends the eos token.

Texts use single spaces between words, and every word is in the vocabulary of ``builtin:tiny``.

Response convention for scoring: ``responses`` are decoded completions. Special tokens left in by
the decoder (``<eos>``, ``<pad>``, ``<bos>``, ``<unk>``, ``</s>``, ``<|im_end|>``, ``<|endoftext|>``)
are ignored; whatever follows the first end-of-sequence marker (``<eos>``, ``</s>``, ``<|im_end|>``,
``<|endoftext|>``) is ignored too.

The tasks
---------

``arith`` -- single-digit addition without carry: ``"3 + 5 ="`` -> ``"8"`` (a, b in 0..9, a + b <= 9:
55 distinct problems, a one-token answer). The answer is drawn uniformly from 0..9 first, then the
split ``a + b``, so every answer is equally likely and a constant answer earns only ~0.1. Reward:
**1.0** when the response is exactly the answer; **0.5** when its first word is the answer but
more words follow (right answer, the model did not stop); **0.0** otherwise. A freshly initialised
``builtin:tiny`` scores about 0.02; going past ~0.1 needs attending to both operands, so a rise of
the mean reward well above 0.1 is real learning (about 0.9+ after a few hundred GRPO steps).

``copy`` -- repeat a short digit sequence: ``"copy 3 1 4 :"`` -> ``"3 1 4"`` (length 2 or 3). Reward: the
fraction of positions ``i < len(label)`` where response word ``i`` equals label word ``i``, times 0.8
if the response has extra words after the answer (so 1.0 only for an exact copy). Partial credit
makes the reward dense; an easier task than ``arith`` for the first learning steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

_END_MARKERS = ("<eos>", "</s>", "<|im_end|>", "<|endoftext|>")
_IGNORED = set(_END_MARKERS) | {"<pad>", "<bos>", "<unk>", "<s>", "<|im_start|>"}


def response_words(response: str) -> list[str]:
    """Split a decoded response into words: cut at the first end marker, drop special tokens.

    ``"8 <eos> <pad>"`` -> ``["8"]``; ``"8<|im_end|>junk"`` -> ``["8"]``; ``" 8  3 "`` -> ``["8", "3"]``.
    """
    cut = len(response)
    for marker in _END_MARKERS:
        at = response.find(marker)
        if at != -1:
            cut = min(cut, at)
    return [w for w in response[:cut].split() if w not in _IGNORED]


def _check_lengths(prompts: list[str], responses: list[str], labels: list[str]) -> None:
    if not (len(prompts) == len(responses) == len(labels)):
        raise ValueError(
            f"score() needs one prompt, response and label per sample; got {len(prompts)} prompts, "
            f"{len(responses)} responses, {len(labels)} labels"
        )


# ---- arith ---------------------------------------------------------------------------------------

def _arith_prompts(count: int, seed: int) -> list[dict]:
    rng = random.Random(f"arith:{seed}")
    records = []
    for _ in range(count):
        total = rng.randrange(10)  # answers uniform over 0..9: a constant answer earns only ~0.1
        a = rng.randrange(total + 1)
        records.append({"input": f"{a} + {total - a} =", "label": str(total)})
    return records


def _arith_score(prompts: list[str], responses: list[str], labels: list[str]) -> list[float]:
    _check_lengths(prompts, responses, labels)
    rewards = []
    for response, label in zip(responses, labels):
        words = response_words(response)
        if words == [label.strip()]:
            rewards.append(1.0)
        elif words and words[0] == label.strip():
            rewards.append(0.5)
        else:
            rewards.append(0.0)
    return rewards


# ---- copy ----------------------------------------------------------------------------------------


def _copy_prompts(count: int, seed: int) -> list[dict]:
    rng = random.Random(f"copy:{seed}")
    records = []
    for _ in range(count):
        digits = [str(rng.randrange(10)) for _ in range(rng.choice((2, 3)))]
        records.append({"input": f"copy {' '.join(digits)} :", "label": " ".join(digits)})
    return records


def _copy_score(prompts: list[str], responses: list[str], labels: list[str]) -> list[float]:
    _check_lengths(prompts, responses, labels)
    rewards = []
    for response, label in zip(responses, labels):
        words, target = response_words(response), label.split()
        if not target:
            raise ValueError("copy task: empty label")
        hits = sum(1 for i, word in enumerate(target) if i < len(words) and words[i] == word)
        reward = hits / len(target)
        if len(words) > len(target):
            reward *= 0.8
        rewards.append(reward)
    return rewards


# ---- registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinTask:
    """A synthetic task: deterministic prompt generator, verifier and demonstrations."""

    name: str
    description: str
    make_prompts: Callable[[int, int], list[dict]]
    score: Callable[[list[str], list[str], list[str]], list[float]]

    def prompts(self, count: int, seed: int = 0) -> list[dict]:
        """``count`` records ``{"input": str, "label": str}``; the same ``(count, seed)`` gives the same list,
        and a longer list extends a shorter one with the same seed."""
        if count < 0:
            raise ValueError(f"task {self.name!r}: count must be >= 0, got {count}")
        return self.make_prompts(count, seed)

    def demonstrations(self, count: int, seed: int = 0) -> list[tuple[str, str]]:
        """``count`` pairs ``(prompt, ideal response)``; the response scores 1.0 and carries no eos."""
        return [(r["input"], r["label"]) for r in self.prompts(count, seed)]


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "arith": BuiltinTask(
        name="arith",
        description="single-digit addition without carry ('3 + 5 =' -> '8'); 1.0 exact, 0.5 right answer then more words",
        make_prompts=_arith_prompts,
        score=_arith_score,
    ),
    "copy": BuiltinTask(
        name="copy",
        description="repeat 2-3 digits ('copy 3 1 4 :' -> '3 1 4'); fraction of positions right, x0.8 if it runs on",
        make_prompts=_copy_prompts,
        score=_copy_score,
    ),
}


def get_task(name: str) -> BuiltinTask:
    """Return the task called ``name``; unknown names raise ``KeyError`` listing the known ones."""
    try:
        return BUILTIN_TASKS[name]
    except KeyError:
        raise KeyError(f"unknown built-in task {name!r}; known tasks: {', '.join(sorted(BUILTIN_TASKS))}") from None
