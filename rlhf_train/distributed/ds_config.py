"""The DeepSpeed JSON config of one role, from the preset's `[deepspeed]` and `[train]` sections.

Trained roles (actor, critic):

    train_batch_size = micro_train_batch_size × data_parallel × gradient_accumulation_steps
                     = [train].train_batch_size                    (one optimizer step)
                       × ring_size in DeepSpeed's config, which counts every rank of a
                       sequence-parallel ring as one more data-parallel rank
    optimizer        = DeepSpeed's AdamW: FusedAdam, or DeepSpeedCPUAdam with offload_optimizer
                       (no client optimizer, so `offload_states` works under ZeRO-3)
    gradient_clipping = [train].max_norm (0 = off)

Frozen roles (reference, reward): ZeRO-3 sharded parameters when the preset's stage is 3, else a
plain (stage 0) engine; micro-batches of micro_rollout_batch_size.

Importing this module does not import DeepSpeed.
"""

from __future__ import annotations

from rlhf_train.config.schema import Preset
from rlhf_train.errors import RunError
from rlhf_train.roles import TRAINED_ROLES, accumulation_steps, learning_rate

FROZEN_ROLES = ("reference", "reward")
ADAM_EPS = 1e-8  # torch AdamW's default, as the local trainer uses
QUIET = {"steps_per_print": 2**31 - 1, "wall_clock_breakdown": False}


def _offload(enabled: bool) -> dict:
    return {"device": "cpu", "pin_memory": True} if enabled else {"device": "none"}


def deepspeed_config(preset: Preset, role: str, data_parallel: int, ring_size: int = 1) -> dict:
    """The config for `deepspeed.initialize` of `role` on each of `data_parallel` × `ring_size` ranks."""
    if role in TRAINED_ROLES:
        return _train_config(preset, role, data_parallel, ring_size)
    if role in FROZEN_ROLES:
        return _inference_config(preset, data_parallel * ring_size)
    raise ValueError(f"unknown role {role!r}; expected one of {TRAINED_ROLES + FROZEN_ROLES}")


def _train_config(preset: Preset, role: str, data_parallel: int, ring_size: int) -> dict:
    train, ds = preset.train, preset.deepspeed
    if ds.offload_optimizer and ds.zero_stage == 0:
        raise RunError("[deepspeed].offload_optimizer = true needs ZeRO (zero_stage 1, 2 or 3; it is 0); "
                       "raise zero_stage or set offload_optimizer = false")
    zero = {"stage": ds.zero_stage, "offload_optimizer": _offload(ds.offload_optimizer)}
    if ds.zero_stage == 3:
        zero["offload_param"] = _offload(ds.offload_params)
    return {
        "train_batch_size": train.train_batch_size * ring_size,
        "train_micro_batch_size_per_gpu": train.micro_train_batch_size,
        "gradient_accumulation_steps": accumulation_steps(train, data_parallel),
        "gradient_clipping": train.max_norm,
        "optimizer": {"type": "AdamW", "params": {
            "lr": learning_rate(train, role), "betas": [train.adam_beta1, train.adam_beta2], "eps": ADAM_EPS,
            "weight_decay": train.weight_decay}},
        "zero_optimization": zero,
        "bf16": {"enabled": ds.bf16},
        **QUIET,
    }


def _inference_config(preset: Preset, data_parallel: int) -> dict:
    ds, micro = preset.deepspeed, preset.train.micro_rollout_batch_size
    zero = {"stage": 0}
    if ds.zero_stage == 3:
        zero = {"stage": 3, "offload_param": _offload(ds.offload_params)}
    return {
        "train_batch_size": micro * data_parallel,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.bf16},
        **QUIET,
    }
