"""Assemble a Ray run: the cluster, the placement groups from the plan, one Ray actor per worker,
the models loaded in them, and the controller-side role groups wired into the unchanged `Trainer`.

`RayRun.start` makes the processes (fast, no models) so that where every worker landed is known —
and reported in a `log` event with `workers` — before the slow model loading starts.
`RayRun.close` leaves nothing behind: actors killed, placement groups removed, and a cluster this
run started shut down.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from pathlib import Path

from rlhf_train.build import emit_loaded, load_run_data
from rlhf_train.config.schema import Preset
from rlhf_train.config.topology import plan_placement
from rlhf_train.distributed.cluster import Cluster, connect
from rlhf_train.distributed.groups import (ActorGroup, CriticGroup, EngineGroup, ReferenceGroup, RewardGroup,
                                           RoleGroup, WeightSync, WorkerInfo)
from rlhf_train.distributed.placement import create_placement_groups, group_specs
from rlhf_train.distributed.worker import DISTRIBUTED_ROLES, WORKER_CLASSES
from rlhf_train.models.loading import load_tokenizer
from rlhf_train.rewards.source import make_reward_source
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir
from rlhf_train.trainer import Roles, Trainer

log = logging.getLogger("rlhf_train")

GROUP_CLASSES: dict[str, type[RoleGroup]] = {"actor": ActorGroup, "reference": ReferenceGroup,
                                             "critic": CriticGroup, "reward": RewardGroup, "engine": EngineGroup}


def engine_ranks(preset: Preset) -> int:
    """Processes (and weight-sync ranks) per engine: vLLM's tensor-parallel workers, else one."""
    return preset.rollout.tensor_parallel_size if preset.rollout.engine == "vllm" else 1


class RayRun:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.placement_groups: list = []
        self.groups: dict[str, RoleGroup] = {}
        self.engine_bundles: dict[int, tuple[int, ...]] = {}  # vLLM tensor parallelism: engine → its bundles

    @classmethod
    def start(cls, preset: Preset, run_dir: Path) -> "RayRun":
        """Connect, place and start every worker process (models not loaded yet)."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        plan = plan_placement(preset)
        specs = group_specs(plan, preset)
        run = cls(connect(preset, specs))
        try:
            run.placement_groups = create_placement_groups(specs, preset.placement.ready_timeout_s, Path(run_dir).name)
            handles: dict[str, dict[int, object]] = {}
            tp = engine_ranks(preset)
            for spec, pg in zip(specs, run.placement_groups):
                for slot in spec.workers:
                    world, rank, num_gpus, capture = len(plan.slots[slot.role]), slot.rank, slot.num_gpus, False
                    if slot.role == "engine" and tp > 1:
                        # one actor per engine; vLLM's Ray executor starts a worker on each of its GPUs' bundles
                        if slot.rank % tp:
                            continue
                        world, rank, num_gpus, capture = world // tp, slot.rank // tp, 0, True
                        run.engine_bundles[rank] = tuple(
                            s.bundle for s in spec.workers if s.role == "engine" and s.rank // tp == rank)
                    worker_class = ray.remote(WORKER_CLASSES[slot.role])
                    handles.setdefault(slot.role, {})[rank] = worker_class.options(
                        num_cpus=slot.num_cpus, num_gpus=num_gpus, max_restarts=0,
                        scheduling_strategy=PlacementGroupSchedulingStrategy(
                            pg, placement_group_bundle_index=slot.bundle,
                            placement_group_capture_child_tasks=capture),
                    ).remote(slot.role, rank, world, preset, str(run_dir))
            for role in plan.slots:
                ranks = handles[role]
                ring = preset.ring_attention.size if role in DISTRIBUTED_ROLES else 1
                run.groups[role] = GROUP_CLASSES[role](role, [ranks[r] for r in sorted(ranks)], ring)
            for group in run.groups.values():
                group.where()
        except BaseException:
            run.close()
            raise
        return run

    def workers(self) -> list[WorkerInfo]:
        return [info for group in self.groups.values() for info in group.infos]

    def load(self, optimizer_steps: int) -> int:
        """Join each distributed role's process group and load every model, all roles at once;
        returns the actor's parameter count."""
        for role in DISTRIBUTED_ROLES:
            if role in self.groups:
                group = self.groups[role]
                address, port = group.get([group.handles[0].rendezvous.remote()])[0]
                group.all("join", address, port)
        pending = []
        for role, group in self.groups.items():
            args = (optimizer_steps,) if role in ("actor", "critic") else ()
            if role == "engine":
                pending.append((group, [h.load.remote(self.engine_bundles.get(r, ())) for r, h in
                                        enumerate(group.handles)]))
                continue
            pending.append((group, [h.load.remote(*args) for h in group.handles]))
        loaded = {group.role: group.get(refs) for group, refs in pending}
        return loaded["actor"][0]

    def roles(self, preset: Preset, tokenizer, emit=None) -> Roles:
        g = self.groups
        reward = make_reward_source(preset, emit, model_fn=g["reward"].scores if "reward" in g else None)
        sync = WeightSync(g["actor"], g["engine"], engine_ranks(preset),
                                   preset.rollout.weight_sync_bucket_mb << 20, preset.placement.ready_timeout_s)
        return Roles(actor=g["actor"], reference=g.get("reference"), critic=g.get("critic"), reward=reward,
                     engine=g["engine"], tokenizer=tokenizer, weight_sync=sync)

    def close(self) -> None:
        """Kill the workers, remove the placement groups, and shut down a cluster started here."""
        import ray

        if ray.is_initialized():
            for group in self.groups.values():
                for handle in group.handles:
                    ray.kill(handle, no_restart=True)
            from ray.util.placement_group import remove_placement_group

            for pg in self.placement_groups:
                remove_placement_group(pg)
        self.cluster.close()


def build_ray_run(preset: Preset, run_dir: RunDir, emitter: Emitter, role_pids: MutableMapping[int, str]
                  ) -> tuple[Trainer, RayRun]:
    """The `Trainer` of a Ray run and the `RayRun` to close when it ends (also on failure).
    `role_pids` is filled with each worker's pid → role for the memory sampler."""
    run = RayRun.start(preset, run_dir.path)
    try:
        workers = run.workers()
        for w in workers:
            role_pids[w.pid] = w.role if len([x for x in workers if x.role == w.role]) == 1 else f"{w.role}{w.rank}"
        nodes = sorted({w.node_id for w in workers})
        emitter.emit("log", level="info", message=f"placed {len(workers)} workers on {len(nodes)} Ray node(s) "
                     f"(cluster: {run.cluster.address}): " + ", ".join(
                         f"{w.role}[{w.rank}] pid {w.pid} node{nodes.index(w.node_id)}" for w in workers),
                     workers=[w.as_json() for w in workers])
        tokenizer = load_tokenizer(preset.model.actor)
        data = load_run_data(preset, tokenizer)
        emit_loaded(emitter, preset, run.load(data.optimizer_steps), data)
        return Trainer(preset, run.roles(preset, tokenizer, emitter.emit), data.prompts, data.total_steps, emitter.emit,
                       run_dir.checkpoints), run
    except BaseException:
        run.close()
        raise
