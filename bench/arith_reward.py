"""The reward function both sides of `vs_trl.py` call: the built-in `arith` verifier
(`rlhf_train.rewards.builtin`), 1.0 for the exact answer, 0.5 for the right first word, else 0.

Every call appends one JSON line `{"n": samples, "sum": total reward}` to the file named by
`$BENCH_REWARD_LOG` (when set), so the benchmark counts the samples each side really scored and
draws both reward curves from the same source. Our side loads it as `[reward].kind = "function"`,
TRL's as one of `reward_funcs`.
"""

from __future__ import annotations

import json
import os

from rlhf_train.rewards.builtin import get_task

_ARITH = get_task("arith")


def arith_reward(prompts: list[str], responses: list[str], labels: list[str]) -> list[float]:
    rewards = _ARITH.score(prompts, responses, labels)
    log = os.environ.get("BENCH_REWARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps({"n": len(rewards), "sum": sum(rewards)}) + "\n")
    return rewards
