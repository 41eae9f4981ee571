"""TRL's side of `vs_trl.py`: `GRPOTrainer` on the work described by a JSON file, run in the
TRL environment (`bench/.venv-trl`, set up by `vs_trl.py`). Not run by hand.

    bench/.venv-trl/bin/python bench/trl_grpo.py WORK.json RESULT.json

WORK.json holds the `Work` fields (`equal_work.py`) plus `model` (the saved tiny model directory,
also read by our side), `prompts` (the step-ordered prompt records our trainer will draw, one
rollout of `prompts_per_step` after another: TRL reads them in order, `shuffle_dataset = false`)
and `out_dir`. RESULT.json gets per optimizer step: wall seconds (`on_step_begin` → `on_step_end`:
generation, reference log-probs, reward and the update), mean completion length (tokens, eos
included, as ours counts), and the budget TRL really ran with (read back from its own arguments).
TRL 1.x turns gradient checkpointing on by default; it is off here, as on our side, so both sides do
the same computation.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arith_reward import arith_reward  # noqa: E402


class StepClock(TrainerCallback):
    """Wall time of every optimizer step and the completion lengths TRL logs."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.step_s: list[float] = []
        self.mean_length: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_s.append(time.perf_counter() - self.t0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "completions/mean_length" in logs:
            self.mean_length.append(float(logs["completions/mean_length"]))


def reward(prompts, completions, label, **kwargs) -> list[float]:
    return arith_reward(prompts, completions, label)


def main() -> None:
    work = json.loads(Path(sys.argv[1]).read_text())
    args = GRPOConfig(
        output_dir=work["out_dir"], use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=work["seed"], data_seed=work["seed"], shuffle_dataset=False,
        max_steps=work["steps"], per_device_train_batch_size=work["prompts_per_step"] * work["samples_per_prompt"],
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
        num_generations=work["samples_per_prompt"], max_completion_length=work["max_new_tokens"],
        temperature=work["temperature"], top_p=work["top_p"], top_k=0, beta=work["kl_coef"],
        learning_rate=work["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=work["adam_beta1"], adam_beta2=work["adam_beta2"], max_grad_norm=work["max_norm"],
        loss_type="dapo", scale_rewards="group", epsilon=work["clip_eps"], disable_dropout=True,
        gradient_checkpointing=False, dataloader_num_workers=0)  # TRL defaults to checkpointing; ours does not
    model = AutoModelForCausalLM.from_pretrained(work["model"], dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(work["model"])
    dataset = Dataset.from_list([{"prompt": r["prompt"], "label": r["label"]} for r in work["prompts"]])
    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    budget = {"samples_per_step": args.generation_batch_size, "samples_per_prompt": args.num_generations,
              "max_new_tokens": args.max_completion_length, "optimizer_steps_per_rollout": args.steps_per_generation}
    Path(sys.argv[2]).write_text(json.dumps({"step_s": clock.step_s, "mean_length": clock.mean_length,
                                             "budget": budget}))


if __name__ == "__main__":
    main()
