"""The pre-flight plan `rlhf-train check` prints: where each role runs, the batch arithmetic and
the memory estimate — from the preset alone, without importing torch, Ray, DeepSpeed or vLLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlhf_train.config.batch import BatchPlan, plan_batches
from rlhf_train.config.memory import MemoryPlan, estimate_memory, human_bytes, human_params
from rlhf_train.config.model_shape import ModelShape, actor_shape
from rlhf_train.config.schema import Preset
from rlhf_train.config.topology import PlacementPlan, Slot, active_roles, plan_placement


def count_prompts(preset: Preset) -> int | None:
    """Prompts the run will use, when that can be known cheaply here (None otherwise)."""
    source = preset.data.prompt_data
    if source.startswith("builtin:"):
        from rlhf_train.data.prompts import BUILTIN_PROMPT_COUNT

        count = preset.data.max_samples or BUILTIN_PROMPT_COUNT
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            return None
        try:  # unreadable or not JSON: unknown here; the data loader says what is wrong
            if path.suffix == ".jsonl":
                with path.open("rb") as f:
                    count = sum(1 for line in f if line.strip())
            elif path.suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
                count = len(data) if isinstance(data, list) else None
            else:
                return None
        except (OSError, ValueError):
            return None
    if count is not None and preset.data.max_samples:
        count = min(count, preset.data.max_samples)
    return count


@dataclass
class Plan:
    preset: Preset
    placement: PlacementPlan
    batches: BatchPlan
    shape: ModelShape | None
    memory: MemoryPlan

    def as_json(self) -> dict:
        roles = {}
        for role, slots in self.placement.slots.items():
            mem = self.memory.roles.get(role)
            roles[role] = {
                "workers": len(slots),
                "slots": [{"node": s.node, "gpu": s.gpu, "gpu_fraction": s.fraction} for s in slots],
                "shared_with": list(self.placement.shared_with.get(role, ())),
                "memory": None if mem is None else {
                    "gpu_bytes": mem.gpu, "host_bytes": mem.host, "formulas": mem.formulas,
                    "kv_cache_tokens": mem.kv_cache_tokens},
            }
        return {
            "roles": roles,
            "gpus_needed": self.placement.gpus_needed,
            "gpus_available": self.placement.gpus_available,
            "batch": self.batches.as_json(),
            "model": None if self.shape is None else {"params": self.shape.params, "source": self.shape.source},
            "gpu_peak_bytes": {"+".join(group): peak for group, peak in self.memory.gpu_peak.items()},
            "gpu_memory_bytes": self.memory.gpu_bytes,
            "host_offload_bytes_per_node": self.memory.host_peak,
            "memory_note": self.memory.note,
        }

    def render(self) -> str:
        p = self.preset
        out = [f"preset {p.run.name}: {p.algo.name} ({p.advantage_estimator} advantages, KL {p.algo.kl_estimator} "
               f"in {'loss' if p.algo.use_kl_loss else 'reward'}, β = {p.algo.kl_coef}), engine {p.rollout.engine}, "
               f"placement {p.placement.mode}"]
        out += ["", "roles"] + [f"  {line}" for line in self._role_lines()]
        out += ["", "batches"] + [f"  {line}" for line in self.batches.lines(p)]
        out += ["", "memory per worker"] + [f"  {line}" for line in self._memory_lines()]
        return "\n".join(out)

    def _role_lines(self) -> list[str]:
        lines = []
        for role in active_roles(self.preset):
            slots = self.placement.slots[role]
            shared = self.placement.shared_with.get(role, ())
            with_ = f", shares with {', '.join(shared)}" if shared else ""
            count = f"×{len(slots)}"
            if role == "engine":
                r = self.preset.rollout
                count = f"×{r.num_engines}" + (f" TP{r.tensor_parallel_size}" if r.tensor_parallel_size > 1 else "")
            lines.append(f"{role:<10} {count:<7} {_where(slots, self.preset)}{with_}")
        if self.preset.placement.gpus_per_node:
            lines.append(f"GPUs: {self.placement.gpus_needed} needed of {self.placement.gpus_available} "
                         f"({self.preset.placement.nodes} node(s) × {self.preset.placement.gpus_per_node})")
        return lines

    def _memory_lines(self) -> list[str]:
        if self.shape is None:
            return [self.memory.note]
        on = "GPU" if self.preset.placement.gpus_per_node else "host (CPU run)"
        lines = [f"model: {human_params(self.shape.params)} parameters = P (from {self.shape.source}); on {on}"]
        for role, mem in self.memory.roles.items():
            parts = ", ".join(f"{part} {human_bytes(b)} [{mem.formulas[part]}]" for part, b in mem.gpu.items())
            lines.append(f"{role:<10} {human_bytes(mem.gpu_total):>10}  {parts}")
            if mem.host:
                lines.append(f"{'':<10} {'':>10}  offloaded to host: " +
                             ", ".join(f"{part} {human_bytes(b)}" for part, b in mem.host.items()))
            if mem.kv_cache_tokens is not None:
                lines.append(f"{'':<10} {'':>10}  KV cache ≈ {mem.kv_cache_tokens:,} tokens per engine")
        if self.preset.placement.gpus_per_node:
            for group, peak in self.memory.gpu_peak.items():
                flag = "  OVER GPU MEMORY" if peak > self.memory.gpu_bytes else ""
                lines.append(f"peak on a GPU of {'+'.join(group)}: {human_bytes(peak)} of {human_bytes(self.memory.gpu_bytes)}{flag}")
        for node, host in self.memory.host_peak.items():
            lines.append(f"host RAM on node{node} for offloaded states: {human_bytes(host)}")
        lines.append("activations are not included")
        return lines


def _where(slots: list[Slot], preset: Preset) -> str:
    if not slots:
        return "-"
    if slots[0].gpu is None:
        node = f"node{slots[0].node} " if preset.placement.nodes > 1 else ""
        return f"{node}CPU ({preset.placement.cpus_per_worker} Ray CPU each)" if preset.placement.mode == "ray" \
            else "CPU, in this process"
    by_node: dict[int, list[int]] = {}
    for s in slots:
        by_node.setdefault(s.node, []).append(s.gpu or 0)
    spans = "; ".join(f"node{n} GPU {_ranges(g)}" for n, g in by_node.items())
    share = "1" if slots[0].fraction == 1 else f"1/{round(1 / slots[0].fraction)}"
    return f"{spans} ({share} GPU each)"


def _ranges(gpus: list[int]) -> str:
    return f"{gpus[0]}" if len(gpus) == 1 else f"{gpus[0]}-{gpus[-1]}" if gpus == list(range(gpus[0], gpus[-1] + 1)) \
        else ",".join(map(str, gpus))


def make_plan(preset: Preset) -> Plan:
    shape = actor_shape(preset)
    placement = plan_placement(preset)
    return Plan(preset=preset, placement=placement, batches=plan_batches(preset, count_prompts(preset)),
                shape=shape, memory=estimate_memory(preset, shape, placement))
