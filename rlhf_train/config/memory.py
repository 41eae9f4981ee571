"""Memory estimate per GPU and role, before anything is loaded.

With P parameters, w bytes per training weight (2 for bf16, else the model dtype), d ranks the
role's ZeRO group spans (all its workers; ring-attention ranks shard like data-parallel ones) and Adam (two fp32 moments, plus an fp32 master copy under bf16):

    weights     = P·w        ÷ d under ZeRO-3            (0 on GPU with offload_params)
    gradients   = P·w        ÷ d under ZeRO-2/3
    optimizer   = P·(8 + 4·bf16) ÷ d under ZeRO-1/2/3    (0 on GPU with offload_optimizer)
    vLLM        = gpu_memory_utilization · GPU memory   (weights P·w ÷ TP, the rest is KV cache)

Frozen roles (reference, reward model) hold weights only. Activations are not estimated. When
models share a GPU the peak is the larger of the generation phase (engines awake, DeepSpeed
states resident unless `[deepspeed].enable_sleep`) and the training phase (engines resident
unless `[rollout].enable_sleep`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhf_train.config.model_shape import ModelShape
from rlhf_train.config.schema import Preset
from rlhf_train.config.topology import PlacementPlan, colocation_groups, workers

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class RoleMemory:
    """Bytes one worker of `role` keeps on its GPU (and on the host), by part."""

    role: str
    gpu: dict[str, int]
    host: dict[str, int]
    formulas: dict[str, str]
    kv_cache_tokens: int | None = None

    @property
    def gpu_total(self) -> int:
        return sum(self.gpu.values())

    @property
    def host_total(self) -> int:
        return sum(self.host.values())


@dataclass
class MemoryPlan:
    roles: dict[str, RoleMemory] = field(default_factory=dict)
    gpu_peak: dict[tuple[str, ...], int] = field(default_factory=dict)
    host_peak: dict[int, int] = field(default_factory=dict)
    gpu_bytes: int = 0
    note: str = ""


def human_bytes(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number ≥ 1 (two decimals)."""
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def human_params(n: int) -> str:
    return f"{n / 1e9:.3f} B" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} K"


def _trained(preset: Preset, role: str, params: int) -> RoleMemory:
    ds = preset.deepspeed
    w = 2 if ds.bf16 else DTYPE_BYTES[preset.model.dtype]
    d = workers(preset, role)
    stage = ds.zero_stage
    weights = params * w // (d if stage == 3 else 1)
    grads = params * w // (d if stage >= 2 else 1)
    optim_per_param = 8 + (4 if ds.bf16 else 0)
    optim = params * optim_per_param // (d if stage >= 1 else 1)
    gpu = {"weights": weights, "gradients": grads, "optimizer": optim}
    host: dict[str, int] = {}
    if ds.offload_optimizer:
        host["optimizer"] = gpu.pop("optimizer")
    if ds.offload_params and stage == 3:
        host["weights"] = gpu.pop("weights")
    shard = f" ÷ {d} ranks" if d > 1 else ""
    formulas = {
        "weights": f"P × {w} B" + (shard if stage == 3 else ""),
        "gradients": f"P × {w} B" + (shard if stage >= 2 else ""),
        "optimizer": f"P × {optim_per_param} B" + (shard if stage >= 1 else ""),
    }
    return RoleMemory(role, gpu, host, formulas)


def _frozen(preset: Preset, role: str, params: int) -> RoleMemory:
    w = 2 if preset.deepspeed.bf16 else DTYPE_BYTES[preset.model.dtype]
    d = workers(preset, role)
    sharded = preset.deepspeed.zero_stage == 3
    weights = params * w // (d if sharded else 1)
    return RoleMemory(role, {"weights": weights}, {}, {"weights": f"P × {w} B" + (f" ÷ {d} ranks" if sharded and d > 1
                                                                                     else "")})


def _engine(preset: Preset, shape: ModelShape, gpu_bytes: int) -> RoleMemory:
    r = preset.rollout
    w = 2 if preset.deepspeed.bf16 else DTYPE_BYTES[preset.model.dtype]
    weights = shape.params * w // r.tensor_parallel_size
    if r.engine == "hf":  # HF generate keeps no KV cache between calls: only the weights stay
        return RoleMemory("engine", {"weights": weights}, {}, {"weights": f"P × {w} B"})
    budget = int(r.gpu_memory_utilization * gpu_bytes)
    kv = max(0, budget - weights)
    tokens = None
    if shape.has_architecture:
        tokens = kv * r.tensor_parallel_size // shape.kv_bytes_per_token(w)
    formulas = {"weights": f"P × {w} B ÷ TP {r.tensor_parallel_size}",
                "kv_cache": f"{r.gpu_memory_utilization} × GPU − weights"}
    return RoleMemory("engine", {"weights": weights, "kv_cache": kv}, {}, formulas, kv_cache_tokens=tokens)


def estimate_memory(preset: Preset, shape: ModelShape | None, placement: PlacementPlan) -> MemoryPlan:
    """Per-role bytes and the peak per colocation group; empty with a note when the size is unknown."""
    plan = MemoryPlan(gpu_bytes=int(preset.placement.gpu_memory_gb * GIB))
    if shape is None:
        plan.note = ("model size unknown here: set [model].size_hint_b (parameters in billions) to get a "
                     "memory estimate")
        return plan
    for group in colocation_groups(preset):
        for role in group:
            if role in ("actor", "critic"):
                plan.roles[role] = _trained(preset, role, shape.params)
            elif role == "engine":
                plan.roles[role] = _engine(preset, shape, plan.gpu_bytes)
            else:
                plan.roles[role] = _frozen(preset, role, shape.params)
        plan.gpu_peak[group] = _group_peak(preset, group, plan.roles)
    plan.host_peak = _host_peak(preset, placement, plan.roles)
    return plan


def _host_peak(preset: Preset, placement: PlacementPlan, roles: dict[str, RoleMemory]) -> dict[int, int]:
    """Host RAM per node taken by offloaded states: what is offloaded permanently, plus — with
    `[deepspeed].enable_sleep` — every trained role's GPU states while the engines generate."""
    per_node: dict[int, int] = {}
    for role in ("actor", "critic"):
        if role not in roles:
            continue
        mem = roles[role]
        each = mem.host_total + (mem.gpu_total if preset.deepspeed.enable_sleep else 0)
        for slot in placement.slots.get(role, []):
            per_node[slot.node] = per_node.get(slot.node, 0) + each
    return {node: b for node, b in sorted(per_node.items()) if b}


def _group_peak(preset: Preset, group: tuple[str, ...], roles: dict[str, RoleMemory]) -> int:
    """Peak bytes on one GPU of a colocation group over the generation and training phases."""
    frozen = sum(roles[r].gpu_total for r in group if r in ("reference", "reward"))
    trained = [roles[r].gpu_total for r in group if r in ("actor", "critic")]
    engine = roles["engine"].gpu_total if "engine" in group else 0
    sleeping_ds = preset.deepspeed.enable_sleep
    generation = engine + frozen + (0 if sleeping_ds else sum(trained))
    # With DeepSpeed sleep only the role being trained is resident; otherwise all trained roles are.
    training_states = max(trained, default=0) if sleeping_ds else sum(trained)
    training = training_states + frozen + (0 if preset.rollout.enable_sleep else engine)
    return max(generation, training)
