"""Ray placement groups made from the placement plan (`config.topology.plan_placement`, the same
object `rlhf-train check` prints): one placement group per node of the plan, STRICT_PACK, so that
the roles the plan puts on one node share a Ray node.

A bundle is one GPU (or, without GPUs, one rank's slot of a colocation group); every role of the
colocation group puts one worker on it with its fraction of the GPU (OpenRLHF: 0.2 each when all
five share) and `cpus_per_worker` CPUs. Distinct plan nodes land on distinct Ray nodes because each
takes what one node has (all its GPUs, on a GPU cluster). A group that Ray cannot place within
`[placement].ready_timeout_s` fails with the resource that is missing, not a silent wait.
"""

from __future__ import annotations

import uuid

from dataclasses import dataclass, field

from rlhf_train.config.schema import Preset
from rlhf_train.config.topology import PlacementPlan
from rlhf_train.errors import RunError


@dataclass(frozen=True)
class WorkerSlot:
    """Where one rank of a role goes: its bundle in a placement group and its resource shares."""

    role: str
    rank: int
    bundle: int
    num_gpus: float
    num_cpus: float


@dataclass
class GroupSpec:
    """One placement group: a node of the plan, the roles on it and its bundles."""

    node: int
    roles: list[str] = field(default_factory=list)
    bundles: list[dict[str, float]] = field(default_factory=list)
    workers: list[WorkerSlot] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"node{self.node} ({', '.join(self.roles)})"


def group_specs(plan: PlacementPlan, preset: Preset) -> list[GroupSpec]:
    """The placement groups for `plan`, one per plan node in node order, bundles in slot order."""
    cpus = preset.placement.cpus_per_worker
    specs: dict[int, GroupSpec] = {}
    keys: dict[int, dict[object, int]] = {}
    for role, slots in plan.slots.items():
        group = tuple(r for r in plan.slots if r == role or r in plan.shared_with.get(role, ()))
        for rank, slot in enumerate(slots):
            spec = specs.setdefault(slot.node, GroupSpec(node=slot.node))
            if role not in spec.roles:
                spec.roles.append(role)
            # a GPU bundle is the GPU; a CPU bundle is a rank's slot, shared by its colocation group
            bundle_key = ("gpu", slot.gpu) if slot.gpu is not None else (group, rank)
            index = keys.setdefault(slot.node, {}).setdefault(bundle_key, len(spec.bundles))
            if index == len(spec.bundles):
                spec.bundles.append({"GPU": 1.0} if slot.gpu is not None else {})
            spec.bundles[index]["CPU"] = spec.bundles[index].get("CPU", 0.0) + cpus
            spec.workers.append(WorkerSlot(role=role, rank=rank, bundle=index,
                                           num_gpus=slot.fraction if slot.gpu is not None else 0.0, num_cpus=cpus))
    return [specs[node] for node in sorted(specs)]


def bundle_totals(bundles: list[dict[str, float]]) -> dict[str, float]:
    """Each resource summed over `bundles`."""
    need: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            need[name] = need.get(name, 0.0) + amount
    return need


def missing_resources(bundles: list[dict[str, float]], nodes: list[dict]) -> str:
    """Why `bundles` (packed on one node) fit on no node of `nodes` (`ray.nodes()` entries that are
    alive): the first resource whose total exceeds what the largest node has."""
    need = bundle_totals(bundles)
    for name, amount in sorted(need.items()):
        best = max((n.get("Resources", {}).get(name, 0.0) for n in nodes), default=0.0)
        if best < amount:
            return f"{name}: needs {amount:g} on one node, the largest node has {best:g}"
    return "the resources exist but are in use by other placement groups or actors (" + \
        ", ".join(f"{k} {v:g}" for k, v in sorted(need.items())) + " needed on one node)"


def create_placement_groups(specs: list[GroupSpec], timeout_s: float, run_id: str) -> list:
    """Create and wait for every group (named `rlhf-<run_id>-<8 hex>-node<N>`: a name is unique in
    a cluster, which several runs may share, even runs of one id); `RunError` naming the group and the missing resource
    when one is not ready within `timeout_s` (the groups already made are removed)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    tag = f"rlhf-{run_id}-{uuid.uuid4().hex[:8]}"
    groups = [placement_group(spec.bundles, strategy="STRICT_PACK", name=f"{tag}-node{spec.node}") for spec in specs]
    refs = [g.ready() for g in groups]
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if not pending:
        return groups
    waiting = specs[refs.index(pending[0])]
    for group in groups:
        remove_placement_group(group)
    alive = [n for n in ray.nodes() if n.get("Alive")]
    totals = ", ".join(f"{k} {v:g}" for k, v in sorted(bundle_totals(waiting.bundles).items()))
    raise RunError(f"Ray could not place the workers of plan {waiting.name} ({len(waiting.bundles)} bundle(s), "
                   f"{totals} in all) within {timeout_s:g} s: {missing_resources(waiting.bundles, alive)}. "
                   "Fix [placement] (gpus_per_node, nodes, *_workers, cpus_per_worker, colocate) or add nodes; "
                   "[placement].ready_timeout_s sets the wait")
