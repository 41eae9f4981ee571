"""OpenRLHF's command-line flag names, accepted by `--set` and resolved to our keys.

Users arrive knowing `--n_samples_per_prompt 8` or `--colocate_all_models`; `--set
n_samples_per_prompt=8` works and the resolution is reported. A few flags are switches that set a
choice (`colocate_all_models` → `placement.colocate = "all"`) or fan out to two keys (`eps_clip`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Alias:
    """An OpenRLHF flag and the (section, key, value transform) pairs it sets."""

    flag: str
    targets: tuple[tuple[str, str], ...]
    transform: Callable[[object], object] | None = None

    def resolve(self, value: object) -> list[tuple[str, str, object]]:
        """The `(section, key, value)` assignments this flag stands for."""
        new_value = self.transform(value) if self.transform else value
        return [(section, key, new_value) for section, key in self.targets]


def _switch(choice: str) -> Callable[[object], object]:
    """A boolean flag that selects `choice` when true and `none` when false."""

    def to_choice(value: object) -> object:
        if not isinstance(value, bool):
            return value  # left for the schema to reject with its own message
        return choice if value else "none"

    return to_choice


def _one(flag: str, section: str, key: str) -> Alias:
    return Alias(flag, ((section, key),))


ALIASES: dict[str, Alias] = {a.flag: a for a in (
    _one("pretrain", "model", "actor"),
    _one("critic_pretrain", "model", "critic"),
    _one("reward_pretrain", "reward", "model"),
    _one("prompt_data", "data", "prompt_data"),
    _one("input_key", "data", "input_key"),
    _one("label_key", "data", "label_key"),
    _one("apply_chat_template", "data", "apply_chat_template"),
    _one("prompt_max_len", "data", "max_prompt_len"),
    _one("max_samples", "data", "max_samples"),
    _one("generate_max_len", "rollout", "max_new_tokens"),
    _one("n_samples_per_prompt", "rollout", "n_samples_per_prompt"),
    _one("temperature", "rollout", "temperature"),
    _one("top_p", "rollout", "top_p"),
    _one("vllm_num_engines", "rollout", "num_engines"),
    _one("vllm_tensor_parallel_size", "rollout", "tensor_parallel_size"),
    _one("vllm_gpu_memory_utilization", "rollout", "gpu_memory_utilization"),
    _one("vllm_enable_sleep", "rollout", "enable_sleep"),
    _one("enable_prefix_caching", "rollout", "enable_prefix_caching"),
    _one("advantage_estimator", "algo", "advantage_estimator"),
    _one("kl_estimator", "algo", "kl_estimator"),
    _one("use_kl_loss", "algo", "use_kl_loss"),
    _one("init_kl_coef", "algo", "kl_coef"),
    _one("kl_target", "algo", "kl_target"),
    _one("kl_horizon", "algo", "kl_horizon"),
    Alias("eps_clip", (("algo", "clip_eps_low"), ("algo", "clip_eps_high"))),
    _one("dual_clip", "algo", "dual_clip"),
    _one("value_clip", "algo", "value_clip"),
    _one("gamma", "algo", "gamma"),
    _one("lambd", "algo", "gae_lambda"),
    _one("entropy_loss_coef", "algo", "entropy_coef"),
    _one("num_episodes", "train", "num_episodes"),
    _one("rollout_batch_size", "train", "rollout_batch_size"),
    _one("train_batch_size", "train", "train_batch_size"),
    _one("micro_train_batch_size", "train", "micro_train_batch_size"),
    _one("micro_rollout_batch_size", "train", "micro_rollout_batch_size"),
    _one("max_epochs", "train", "max_epochs"),
    _one("actor_learning_rate", "train", "actor_lr"),
    _one("critic_learning_rate", "train", "critic_lr"),
    _one("lr_warmup_ratio", "train", "lr_warmup_ratio"),
    _one("l2", "train", "weight_decay"),
    _one("max_norm", "train", "max_norm"),
    _one("packing_samples", "train", "packing_samples"),
    _one("zero_stage", "deepspeed", "zero_stage"),
    _one("bf16", "deepspeed", "bf16"),
    _one("adam_offload", "deepspeed", "offload_optimizer"),
    _one("deepspeed_enable_sleep", "deepspeed", "enable_sleep"),
    _one("gradient_checkpointing", "deepspeed", "gradient_checkpointing"),
    Alias("colocate_all_models", (("placement", "colocate"),), _switch("all")),
    Alias("colocate_actor_ref", (("placement", "colocate"),), _switch("actor_ref")),
    Alias("colocate_critic_reward", (("placement", "colocate"),), _switch("critic_reward")),
    _one("ring_attn_size", "ring_attention", "size"),
    _one("ring_head_stride", "ring_attention", "head_stride"),
    _one("remote_rm_url", "reward", "urls"),
    _one("seed", "run", "seed"),
    _one("save_steps", "checkpoint", "save_steps"),
    _one("max_ckpt_num", "checkpoint", "keep"),
)}

