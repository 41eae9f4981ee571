"""Which roles a preset runs, how many workers each has, and where they land.

Pure arithmetic over a `Preset`; `check`, the validation rules and (later) the Ray launcher read
the same answers from here.

Placement model (as OpenRLHF): every GPU is one *bundle*. Roles that are colocated share bundles
and each takes an equal fraction of the GPU (OpenRLHF uses 0.2 when all five share). Groups are
laid out node by node, first fit; a vLLM engine's tensor-parallel GPUs must sit on one node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhf_train.config.schema import Preset

ROLE_ORDER = ("actor", "reference", "critic", "reward", "engine")


def active_roles(preset: Preset) -> tuple[str, ...]:
    """Roles the run creates: the reference only when a KL term is in use (β > 0), the critic only
    for GAE, the reward role only for a reward model; engines for vLLM, and for the HF engine under
    Ray (its own processes, synced like vLLM). In local mode the HF engine generates with the
    actor's own model, in process."""
    roles = ["actor"]
    if preset.algo.kl_coef > 0:
        roles.append("reference")
    if preset.uses_critic:
        roles.append("critic")
    if preset.uses_reward_model:
        roles.append("reward")
    if preset.rollout.engine == "vllm" or preset.placement.mode == "ray":
        roles.append("engine")
    return tuple(roles)


def workers(preset: Preset, role: str) -> int:
    """Processes of `role`; 0 in the preset means "as many as the actor". Engines count as
    num_engines × tensor_parallel_size workers (one per GPU)."""
    p = preset.placement
    if role == "engine":
        return preset.rollout.num_engines * preset.rollout.tensor_parallel_size
    counts = {"actor": p.actor_workers, "reference": p.ref_workers, "critic": p.critic_workers,
              "reward": p.reward_workers}
    return counts[role] or p.actor_workers


def data_parallel_size(preset: Preset, role: str = "actor") -> int:
    """Data-parallel ranks of a trained role: its workers divided by the ring-attention size."""
    return max(1, workers(preset, role) // preset.ring_attention.size)


def colocation_groups(preset: Preset) -> list[tuple[str, ...]]:
    """Active roles grouped by shared GPUs, in placement order."""
    roles = active_roles(preset)
    mode = preset.placement.colocate
    if mode == "all":
        return [roles]
    together = {"actor_ref": ("actor", "reference"), "critic_reward": ("critic", "reward")}.get(mode, ())
    shared = tuple(r for r in roles if r in together)
    groups: list[tuple[str, ...]] = [shared] if shared else []
    groups += [(r,) for r in roles if r not in shared]
    groups.sort(key=lambda g: ROLE_ORDER.index(g[0]))
    return groups


@dataclass(frozen=True)
class Slot:
    """One worker of a role: the node and GPU it lands on and the GPU fraction it asks Ray for."""

    node: int
    gpu: int | None
    fraction: float


@dataclass
class PlacementPlan:
    """Where every worker runs. `shortfall` > 0 when the preset asks for more GPUs than it has."""

    slots: dict[str, list[Slot]] = field(default_factory=dict)
    shared_with: dict[str, tuple[str, ...]] = field(default_factory=dict)
    gpus_needed: int = 0
    gpus_available: int = 0
    split_engines: list[int] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.gpus_needed <= self.gpus_available and not self.split_engines


def _group_bundles(preset: Preset, group: tuple[str, ...]) -> int:
    return max(workers(preset, r) for r in group)


def plan_placement(preset: Preset) -> PlacementPlan:
    """Lay every active role onto nodes and GPUs. Without GPUs, each colocation group goes whole to
    one node, the groups dealt round-robin over the nodes."""
    p = preset.placement
    plan = PlacementPlan(gpus_available=p.nodes * p.gpus_per_node)
    groups = colocation_groups(preset)
    for group in groups:
        for role in group:
            plan.shared_with[role] = tuple(r for r in group if r != role)
    if p.gpus_per_node == 0:  # CPU: colocation groups dealt round-robin over the nodes
        for index, group in enumerate(groups):
            for role in group:
                plan.slots[role] = [Slot(node=index % p.nodes, gpu=None, fraction=0.0)
                                    for _ in range(workers(preset, role))]
        return plan

    free = [p.gpus_per_node] * p.nodes
    node = 0
    tp = preset.rollout.tensor_parallel_size

    def take(count: int, whole_node: bool) -> list[tuple[int, int]]:
        """Take `count` GPUs node by node; `whole_node` keeps them on one node (a TP group)."""
        nonlocal node
        taken: list[tuple[int, int]] = []
        while len(taken) < count:
            if node >= p.nodes:
                taken.append((node, len(taken)))  # beyond the cluster: counted as shortfall
                continue
            if whole_node and free[node] < count - len(taken) and p.gpus_per_node >= count:
                node += 1
                continue
            if free[node] == 0:
                node += 1
                continue
            taken.append((node, p.gpus_per_node - free[node]))
            free[node] -= 1
        return taken

    for group in groups:
        fraction = round(1.0 / len(group), 4)
        if group == ("engine",):
            gpus = []
            for engine in range(preset.rollout.num_engines):
                engine_gpus = take(tp, whole_node=True)
                if len({n for n, _ in engine_gpus}) > 1 or engine_gpus[0][0] >= p.nodes:  # split or no room
                    plan.split_engines.append(engine)
                gpus += engine_gpus
        else:
            gpus = take(_group_bundles(preset, group), whole_node=False)
        plan.gpus_needed += len(gpus)
        for role in group:
            plan.slots[role] = [Slot(node=n, gpu=g, fraction=fraction) for n, g in gpus[: workers(preset, role)]]
    return plan
