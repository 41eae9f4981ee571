"""The roles of a run — actor, reference, critic, reward — as objects with the methods a Ray actor
exposes (`log_probs`, `values`, `fit`, `scores`, `state_dict`, `save`, `offload`, `reload`). The step
loop talks only to these methods, so the distributed placement moves them into processes without
touching the loop.

A role runs its model through a `Backend`: `LOCAL` (everything in this process, plain torch AdamW;
`placement.mode = "local"`) or one rank of a data-parallel group
(`rlhf_train.distributed.strategy.DeepSpeedStrategy`). There is one fit loop for both: `fit_plan`
cuts the global batch the same way whatever the rank count, so ranks together take the same
optimizer steps one process would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from rlhf_train.algos import aggregate_loss, entropy_from_logits, kl_loss, policy_loss, value_loss
from rlhf_train.attention.group import RingGroup, no_ring
from rlhf_train.config.schema import Preset, TrainConfig
from rlhf_train.distributed.weight_sync import Bucket, Slot, flatten, module_slots, plan_buckets
from rlhf_train.errors import RunError
from rlhf_train.experience import ExperienceBatch

TRAINED_ROLES = ("actor", "critic")


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Learning-rate multiplier after `step` optimizer steps: linear warm-up to 1 over
    `warmup_steps`, then constant, or cosine from 1 down to `min_lr_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int
                ) -> torch.optim.lr_scheduler.LambdaLR:
    """`lr_factor` over `optimizer` (warm-up of ⌈lr_warmup_ratio × total_steps⌉ steps), stepped once
    per optimizer step."""
    warmup = math.ceil(train.lr_warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, total_steps, train.lr_scheduler, train.min_lr_ratio))


def learning_rate(train: TrainConfig, role: str) -> float:
    """The peak learning rate of a trained role: `actor_lr` or `critic_lr`."""
    rates = {"actor": train.actor_lr, "critic": train.critic_lr}
    if role not in rates:
        raise ValueError(f"{role!r} is not a trained role; expected one of {TRAINED_ROLES}")
    return rates[role]


def accumulation_steps(train: TrainConfig, data_parallel: int) -> int:
    """Gradient-accumulation steps = train_batch_size / (micro_train_batch_size × data_parallel)."""
    per_pass = train.micro_train_batch_size * data_parallel
    if train.train_batch_size % per_pass:
        raise RunError(f"[train].train_batch_size = {train.train_batch_size} is not a multiple of "
                       f"micro_train_batch_size × data-parallel ranks = {train.micro_train_batch_size} × "
                       f"{data_parallel}; make it one")
    return train.train_batch_size // per_pass


def fit_plan(size: int, train: TrainConfig, data_parallel: int, rank: int, seed: int) -> list[list[torch.Tensor]]:
    """The micro-batches rank `rank` of `data_parallel` trains on, grouped by optimizer step:
    `plan[k]` holds the index tensors (rows of the global batch of `size` samples) whose gradients
    make up this rank's share of optimizer step k.

    Each of the `max_epochs` epochs draws one permutation of the global batch
    (`torch.randperm(size)` from a generator seeded with `seed`, epochs in sequence) and cuts it into
    optimizer steps of `train_batch_size` samples; rank r takes the contiguous slice r
    (train_batch_size / data_parallel samples) of each step and cuts it into micro-batches of
    `micro_train_batch_size`. The micro-batches of all ranks together are therefore the same for any
    `data_parallel`: with gradients averaged over ranks and accumulation steps, every optimizer step
    sees the gradient one rank would.
    """
    if not 0 <= rank < data_parallel:
        raise ValueError(f"rank {rank} is not in [0, {data_parallel})")
    step_size, micro = train.train_batch_size, train.micro_train_batch_size
    per_rank = step_size // data_parallel
    accumulation_steps(train, data_parallel)  # checks the divisibility the cut below relies on
    if size % step_size:
        raise RunError(f"{size} samples are not a whole number of optimizer steps of [train].train_batch_size "
                       f"= {step_size}")
    generator = torch.Generator().manual_seed(seed)
    plan = []
    for _ in range(train.max_epochs):
        order = torch.randperm(size, generator=generator)
        for start in range(0, size, step_size):
            mine = order[start + rank * per_rank:start + (rank + 1) * per_rank]
            plan.append([mine[i:i + micro] for i in range(0, per_rank, micro)])
    return plan


@dataclass(frozen=True)
class Moved:
    """What one `offload()` or `reload()` did: its wall time and, on CUDA, the accelerator bytes it
    freed (offload) or took back (reload); None where that is not measurable (CPU)."""

    seconds: float
    device_bytes: int | None


class Trainable(Protocol):
    """One trained model behind its optimizer, as `fit_epochs` and the roles use it."""

    def __call__(self, *args, **kwargs): ...

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate ∇(loss / accumulation steps) of one micro-batch."""

    def step(self) -> float:
        """Clip, step the optimizer and the schedule, zero the gradients; the gradient norm before
        clipping (over all ranks)."""

    @property
    def lr(self) -> float: ...

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's state dict on rank 0, {} on other ranks (collective: every rank calls)."""

    @property
    def module(self) -> nn.Module:
        """The trained module (under ZeRO-3 its parameters hold shards outside `gathered`)."""

    def gathered(self, tensors: list[torch.Tensor]) -> AbstractContextManager:
        """Inside the context every tensor of `tensors` (from `module.state_dict(keep_vars=True)`)
        holds its full value on every rank (collective under ZeRO-3: every rank enters it)."""

    def offload(self) -> Moved: ...

    def reload(self) -> Moved: ...

    def save_state(self, directory: Path) -> None:
        """This rank's training state (weights, optimizer state, schedule) into `directory`
        (collective: every rank calls, with the same directory)."""

    def load_state(self, directory: Path) -> None:
        """Restore what `save_state` wrote (collective)."""


class Backend(Protocol):
    """Where a role's model runs: which rank of how many, on which device, and how it is trained."""

    rank: int
    world_size: int
    device: torch.device
    ring: RingGroup
    """This rank's sequence-parallel ring (`rlhf_train.attention.group`): `ring.size` consecutive
    ranks share each sample; data-parallel ranks = world_size / ring.size."""

    def trained(self, module: nn.Module, role: str, preset: Preset, total_steps: int) -> Trainable:
        """`module` wrapped for training as `role` ("actor" or "critic") over `total_steps` optimizer steps."""

    def frozen(self, module: nn.Module, role: str, preset: Preset) -> Callable:
        """`module` wrapped for inference only (no gradients)."""

    def sum_over_ranks(self, values: list[float]) -> list[float]:
        """Element-wise sums of `values` over all ranks (collective)."""


class Optimized:
    """A module with torch AdamW, the schedule, gradient accumulation and clipping, in this process."""

    def __init__(self, module: nn.Module, lr: float, train: TrainConfig, total_steps: int):
        self.module = module
        params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=(train.adam_beta1, train.adam_beta2),
                                           weight_decay=train.weight_decay)
        self.scheduler = lr_schedule(self.optimizer, train, total_steps)
        self.max_norm = train.max_norm
        self.accumulation = accumulation_steps(train, 1)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accumulation).backward()

    def step(self) -> float:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm if self.max_norm > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def gathered(self, tensors: list[torch.Tensor]) -> AbstractContextManager:
        return nullcontext()

    def offload(self) -> Moved:
        raise RunError("offloading model states needs DeepSpeed ZeRO-3: set [placement].mode = \"ray\" and "
                       "[deepspeed].zero_stage = 3")

    reload = offload

    def save_state(self, directory: Path) -> None:
        """Weights, AdamW moments and the schedule's position as `directory/state.pt`."""
        torch.save({"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict()}, directory / "state.pt")

    def load_state(self, directory: Path) -> None:
        state = torch.load(directory / "state.pt", weights_only=True)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class LocalBackend:
    """Everything in this process: rank 0 of 1, on the CPU or wherever the modules already are."""

    rank = 0
    world_size = 1
    device = torch.device("cpu")
    ring = no_ring()

    def trained(self, module: nn.Module, role: str, preset: Preset, total_steps: int) -> Optimized:
        return Optimized(module, learning_rate(preset.train, role), preset.train, total_steps)

    def frozen(self, module: nn.Module, role: str, preset: Preset) -> nn.Module:
        return module.requires_grad_(False)

    def sum_over_ranks(self, values: list[float]) -> list[float]:
        return values


LOCAL = LocalBackend()


def on_device(batch: ExperienceBatch, device: torch.device) -> ExperienceBatch:
    """`batch` with every tensor on `device` (the same object when it is the CPU)."""
    if device.type == "cpu":
        return batch
    return ExperienceBatch(**{f.name: None if getattr(batch, f.name) is None else getattr(batch, f.name).to(device)
                              for f in fields(batch)})


def fit_epochs(batch: ExperienceBatch, model: Trainable, loss_fn: Callable[[ExperienceBatch], tuple[torch.Tensor,
               dict[str, float]]], train: TrainConfig, backend: Backend, seed: int) -> dict[str, float]:
    """Train `model` on this rank's share of the global `batch` (`fit_plan`): `max_epochs` passes,
    one optimizer step per train_batch_size samples of the global batch, with gradient accumulation
    over the micro-batches in between. Returns the mean over all ranks' micro-batches of every
    statistic `loss_fn` reports — what one rank would report — plus the mean gradient norm.

    The ranks of one ring (`backend.ring`) are one data-parallel rank: they train on the same
    micro-batches, each computing the whole loss from the ring-gathered outputs, and their
    parameter gradients sum to the micro-batch's gradient. The loss is scaled by the ring size
    because the backend averages gradients over all world_size = data-parallel × ring ranks."""
    totals: dict[str, float] = {}
    count = 0
    norms = []
    ring = backend.ring.size
    for step in fit_plan(batch.size, train, backend.world_size // ring, backend.rank // ring, seed):
        for index in step:
            loss, stats = loss_fn(on_device(batch.select(index), backend.device))
            model.backward(loss * ring)
            for name, value in stats.items():
                totals[name] = totals.get(name, 0.0) + value
            count += 1
        norms.append(model.step())
    names = sorted(totals)
    *sums, count = backend.sum_over_ranks([totals[name] for name in names] + [float(count)])
    means = {name: total / count for name, total in zip(names, sums)}
    means["grad_norm"] = sum(norms) / len(norms) if norms else 0.0
    return means


def checkpoint_activations(module: nn.Module) -> None:
    """`[deepspeed].gradient_checkpointing`: the Hugging Face model inside `module` recomputes its
    layers' activations in backward instead of keeping them (active in train mode, see `train_mode`)."""
    for sub in module.modules():
        if getattr(sub, "supports_gradient_checkpointing", False):
            if hasattr(sub, "activation_checkpointing_enable"):  # transformers ≥ 5.24's name
                sub.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                sub.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            return
    raise RunError(f"[deepspeed].gradient_checkpointing = true but {type(module).__name__} has no Hugging Face "
                   "model that supports it; set it to false")


@contextmanager
def train_mode(module: nn.Module) -> Iterator[None]:
    """`module` in train mode for the updates (gradient checkpointing needs it), eval mode after."""
    module.train()
    try:
        yield
    finally:
        module.eval()


@torch.no_grad()
def forward_in_chunks(fn: Callable[[ExperienceBatch], torch.Tensor], batch: ExperienceBatch, size: int,
                      device: torch.device = LOCAL.device) -> torch.Tensor:
    """`fn` over micro-batches of `size` samples moved to `device`, concatenated on the CPU."""
    return torch.cat([fn(on_device(batch.select(part), device)).cpu() for part in batch.micro_batches(size)], dim=0)


def save_training_state(model: Trainable, backend: Backend, directory: Path) -> None:
    """A trained role's checkpoint (`Trainable.save_state`) plus this rank's random generators
    (`rng_rank<R>.pt`), in `directory` (collective)."""
    from rlhf_train.checkpoint.state import save_rng

    directory.mkdir(parents=True, exist_ok=True)
    model.save_state(directory)
    save_rng(directory / f"rng_rank{backend.rank}.pt")


def load_training_state(model: Trainable, backend: Backend, directory: Path) -> None:
    """Restore what `save_training_state` wrote (collective)."""
    from rlhf_train.checkpoint.state import load_rng

    model.load_state(directory)
    load_rng(directory / f"rng_rank{backend.rank}.pt")


def _without_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix):]: tensor for name, tensor in state.items() if name.startswith(prefix)}


class ActorRole:
    """The policy: log-probs of responses, and the PPO-clip update (with the KL loss and entropy
    terms when configured).

    With a data-parallel backend every rank holds one `ActorRole`: `fit` takes the *global* batch on
    every rank (each trains on its `fit_plan` share); `log_probs` takes this rank's part of a batch,
    and under ZeRO-3 every rank must call it with the same number of micro-batches (their forward
    passes gather parameters together)."""

    def __init__(self, actor: nn.Module, preset: Preset, total_optimizer_steps: int, backend: Backend = LOCAL):
        self.actor = actor
        self.preset = preset
        self.backend = backend
        self.temperature = preset.rollout.temperature or 1.0
        if preset.deepspeed.gradient_checkpointing:
            checkpoint_activations(actor)
        if preset.train.packing_samples:
            actor.pack_over(backend.ring)
        self.optimized = backend.trained(actor, "actor", preset, total_optimizer_steps)
        self.kl_coef = preset.algo.kl_coef

    def _log_probs(self, mb: ExperienceBatch) -> torch.Tensor:
        return self.optimized(mb.sequences, mb.attention_mask, mb.num_actions, temperature=self.temperature)

    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return forward_in_chunks(self._log_probs, batch, self.preset.train.micro_rollout_batch_size,
                                 self.backend.device)

    def _loss(self, mb: ExperienceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        algo = self.preset.algo
        log_probs, logits = self.optimized(mb.sequences, mb.attention_mask, mb.num_actions, return_logits=True,
                                           temperature=self.temperature)
        out = policy_loss(log_probs, mb.old_log_probs, mb.advantages, mb.action_mask, algo.clip_eps_low,
                          algo.clip_eps_high, algo.dual_clip or None, algo.loss_agg)
        loss = out.loss
        stats = {"policy_loss": out.loss.item(), "clip_frac": float(out.clip_frac), "approx_kl": float(out.approx_kl)}
        if algo.use_kl_loss and mb.ref_log_probs is not None:
            kl = kl_loss(log_probs, mb.ref_log_probs, mb.action_mask, algo.kl_estimator, algo.loss_agg)
            loss = loss + self.kl_coef * kl
            stats["kl_loss"] = kl.item()
        entropy = aggregate_loss(entropy_from_logits(logits), mb.action_mask, algo.loss_agg)
        if algo.entropy_coef:
            loss = loss - algo.entropy_coef * entropy
        stats["entropy"] = entropy.item()
        return loss, stats

    def fit(self, batch: ExperienceBatch, kl_coef: float, seed: int) -> dict[str, float]:
        self.kl_coef = kl_coef
        with train_mode(self.actor):
            stats = fit_epochs(batch, self.optimized, self._loss, self.preset.train, self.backend, seed)
        stats["actor_lr"] = self.optimized.lr
        return stats

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The policy's Hugging Face state dict (keys of `actor.model`) on rank 0, {} on other ranks;
        every rank must call it (ZeRO-3 gathers the parameters)."""
        return _without_prefix(self.optimized.full_state_dict(), "model.")

    def weight_plan(self, bucket_bytes: int) -> list[Bucket]:
        """The policy's weights (Hugging Face names, as `state_dict`) in broadcast buckets."""
        return plan_buckets([(Slot(tuple(n.removeprefix("model.") for n in slot.names), slot.shape), dtype)
                             for slot, dtype in module_slots(self.optimized.module)], bucket_bytes)

    def send_weights(self, plan: list[Bucket], send: Callable[[Bucket, torch.Tensor], None] | None,
                     device: torch.device) -> None:
        """Each bucket of `plan` gathered (every rank must call this: ZeRO-3 gathers collectively)
        and, where `send` is given, flattened on `device` and handed to it with its bucket."""
        state = self.optimized.module.state_dict(keep_vars=True)
        for bucket in plan:
            tensors = [state["model." + slot.names[0]] for slot in bucket.slots]
            with self.optimized.gathered(tensors):
                if send is not None:
                    send(bucket, flatten(bucket, [t.detach() for t in tensors], device))

    def save(self, directory: Path, tokenizer) -> None:
        """Write the policy and `tokenizer` to `directory` in Hugging Face format from rank 0 (every
        rank must call it)."""
        state = self.state_dict()
        if self.backend.rank == 0:
            self.actor.model.save_pretrained(directory, state_dict=state)
            tokenizer.save_pretrained(directory)

    def offload(self) -> Moved:
        """Move weights, gradients and optimizer state off the accelerator (DeepSpeed ZeRO-3 only)."""
        return self.optimized.offload()

    def reload(self) -> Moved:
        """Bring back what `offload` moved."""
        return self.optimized.reload()

    def save_state(self, directory: Path) -> None:
        """The policy's training state and this rank's random generators (`save_training_state`)."""
        save_training_state(self.optimized, self.backend, directory)

    def load_state(self, directory: Path) -> None:
        load_training_state(self.optimized, self.backend, directory)


class ReferenceRole:
    """The frozen reference policy: log π_ref of the sampled tokens."""

    def __init__(self, actor: nn.Module, preset: Preset, backend: Backend = LOCAL):
        if preset.train.packing_samples:
            actor.pack_over(backend.ring)
        self.actor = backend.frozen(actor, "reference", preset)
        self.preset = preset
        self.backend = backend
        self.temperature = preset.rollout.temperature or 1.0

    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return forward_in_chunks(
            lambda mb: self.actor(mb.sequences, mb.attention_mask, mb.num_actions, temperature=self.temperature),
            batch, self.preset.train.micro_rollout_batch_size, self.backend.device)


class CriticRole:
    """The value function for GAE: values of the states before each response token, and the
    clipped value-loss update. Data-parallel use as for `ActorRole`."""

    def __init__(self, critic: nn.Module, preset: Preset, total_optimizer_steps: int, backend: Backend = LOCAL):
        self.critic = critic
        self.preset = preset
        self.backend = backend
        if preset.deepspeed.gradient_checkpointing:
            checkpoint_activations(critic)
        if preset.train.packing_samples:
            critic.pack_over(backend.ring)
        self.optimized = backend.trained(critic, "critic", preset, total_optimizer_steps)

    def values(self, batch: ExperienceBatch) -> torch.Tensor:
        return forward_in_chunks(lambda mb: self.optimized(mb.sequences, mb.attention_mask, mb.num_actions),
                                 batch, self.preset.train.micro_rollout_batch_size, self.backend.device)

    def _loss(self, mb: ExperienceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        values = self.optimized(mb.sequences, mb.attention_mask, mb.num_actions)
        loss = value_loss(values, mb.values, mb.returns, mb.action_mask, self.preset.algo.value_clip or None,
                          self.preset.algo.loss_agg)
        return loss, {"critic_loss": loss.item()}

    def fit(self, batch: ExperienceBatch, seed: int) -> dict[str, float]:
        with train_mode(self.critic):
            stats = fit_epochs(batch, self.optimized, self._loss, self.preset.train, self.backend, seed)
        stats["critic_lr"] = self.optimized.lr
        stats["critic_grad_norm"] = stats.pop("grad_norm")
        return stats

    def offload(self) -> Moved:
        """As `ActorRole.offload`."""
        return self.optimized.offload()

    def reload(self) -> Moved:
        """As `ActorRole.reload`."""
        return self.optimized.reload()

    def save_state(self, directory: Path) -> None:
        """As `ActorRole.save_state`."""
        save_training_state(self.optimized, self.backend, directory)

    def load_state(self, directory: Path) -> None:
        load_training_state(self.optimized, self.backend, directory)
