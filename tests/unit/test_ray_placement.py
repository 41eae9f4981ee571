"""Placement groups derived from the placement plan (the object `rlhf-train check` prints)."""

from __future__ import annotations

import torch

from rlhf_train.config import validate_preset_dict
from rlhf_train.config.topology import plan_placement
from rlhf_train.distributed.groups import equal_parts, even_parts
from rlhf_train.distributed.placement import WorkerSlot, group_specs, missing_resources


def preset(**sections):
    raw = {"schema_version": 1, "run": {"name": "p"}, "rollout": {"n_samples_per_prompt": 4},
           "algo": {"name": "ppo"}, "reward": {"kind": "model", "model": "/some/rm"},
           "train": {"rollout_batch_size": 4, "train_batch_size": 8, "micro_train_batch_size": 2},
           "placement": {"mode": "ray", "actor_workers": 2, "cpus_per_worker": 0.25}}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    result = validate_preset_dict(raw)
    assert result.ok, [e.render() for e in result.errors]
    return result.preset


def test_cpu_groups_without_colocation_one_placement_group_for_the_node():
    p = preset()
    (spec,) = group_specs(plan_placement(p), p)
    assert (spec.node, spec.roles, spec.name) == (0, ["actor", "reference", "critic", "reward", "engine"],
                                                  "node0 (actor, reference, critic, reward, engine)")
    assert spec.bundles == [{"CPU": 0.25}] * 9  # one slot per rank of every role: 2 + 2 + 2 + 2 + 1
    assert spec.workers[:3] == [WorkerSlot("actor", 0, 0, 0.0, 0.25), WorkerSlot("actor", 1, 1, 0.0, 0.25),
                                WorkerSlot("reference", 0, 2, 0.0, 0.25)]
    assert len({w.bundle for w in spec.workers}) == 9


def test_cpu_colocated_roles_share_their_rank_slots():
    p = preset(placement={"colocate": "actor_ref"})
    (spec,) = group_specs(plan_placement(p), p)
    assert spec.bundles[:2] == [{"CPU": 0.5}, {"CPU": 0.5}]  # actor r + reference r share slot r
    assert {(w.role, w.rank): w.bundle for w in spec.workers if w.role in ("actor", "reference")} == {
        ("actor", 0): 0, ("actor", 1): 1, ("reference", 0): 0, ("reference", 1): 1}


def test_colocate_all_on_gpus_shares_each_gpu_in_fifths():
    p = preset(placement={"gpus_per_node": 2, "colocate": "all"}, rollout={"num_engines": 2})
    (spec,) = group_specs(plan_placement(p), p)
    assert spec.roles == ["actor", "reference", "critic", "reward", "engine"] and spec.node == 0
    assert spec.bundles == [{"GPU": 1.0, "CPU": 1.25}, {"GPU": 1.0, "CPU": 1.25}]
    assert sorted((w.role, w.rank, w.bundle, w.num_gpus) for w in spec.workers) == sorted(
        (role, rank, rank, 0.2) for role in spec.roles for rank in range(2))


def test_actor_ref_colocation_on_two_nodes_follows_the_plan_node_by_node():
    p = preset(placement={"gpus_per_node": 4, "nodes": 2, "colocate": "actor_ref", "actor_workers": 4,
                          "critic_workers": 2, "reward_workers": 1},
               train={"train_batch_size": 16})
    plan = plan_placement(p)
    specs = group_specs(plan, p)
    assert [(s.name, len(s.bundles)) for s in specs] == [
        ("node0 (actor, reference)", 4), ("node1 (critic, reward, engine)", 4)]
    # every worker of the plan is in exactly one group, on the plan's node, with the plan's GPU share
    placed = {(w.role, w.rank): (s.node, w.num_gpus) for s in specs for w in s.workers}
    expected = {(role, rank): (slot.node, slot.fraction) for role, slots in plan.slots.items()
                for rank, slot in enumerate(slots)}
    assert placed == expected
    assert specs[0].bundles == [{"GPU": 1.0, "CPU": 0.5}] * 4
    assert all(w.num_gpus == 0.5 for w in specs[0].workers)


def test_cpu_colocation_groups_deal_round_robin_over_nodes():
    p = preset(placement={"nodes": 2})
    specs = group_specs(plan_placement(p), p)
    assert [s.name for s in specs] == ["node0 (actor, critic, engine)", "node1 (reference, reward)"]


def test_missing_resources_names_the_resource_and_the_largest_node():
    nodes = [{"Resources": {"CPU": 2.0}}, {"Resources": {"CPU": 4.0, "GPU": 1.0}}]
    assert missing_resources([{"GPU": 1.0, "CPU": 1.0}] * 2, nodes) == \
        "GPU: needs 2 on one node, the largest node has 1"
    assert missing_resources([{"CPU": 8.0}], nodes) == "CPU: needs 8 on one node, the largest node has 4"
    assert missing_resources([{"CPU": 1.0}], nodes).startswith("the resources exist but are in use")


def test_even_parts_cover_everything_once_in_order():
    assert even_parts(10, 3) == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert even_parts(2, 3) == [slice(0, 1), slice(1, 2), slice(2, 2)]
    for total in range(12):
        for parts in range(1, 5):
            covered = [i for s in even_parts(total, parts) for i in range(total)[s]]
            assert covered == list(range(total))


def test_equal_parts_give_every_rank_the_same_rows_count_and_pad_with_the_last_row():
    assert [p.tolist() for p in equal_parts(5, 2)] == [[0, 1, 2], [3, 4, 4]]
    assert [p.tolist() for p in equal_parts(1, 3)] == [[0], [0], [0]]
    for total in range(1, 12):
        for ranks in range(1, 5):
            parts = equal_parts(total, ranks)
            assert len({len(p) for p in parts}) == 1
            assert torch.cat(parts)[:total].tolist() == list(range(total))
