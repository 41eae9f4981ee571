"""The controller's side of the Ray roles: each role is a group of Ray actors (one per rank) behind
the same methods the local roles have (`roles.py`), so the step loop (`trainer.py`) drives either
without knowing which.

Inference calls (`log_probs`, `values`, `scores`, `generate`) split their input into contiguous
parts, one per rank, and concatenate the answers in rank order. Training calls (`fit`) send every
rank the whole batch once (through Ray's object store); each rank takes its share by
`roles.fit_plan`. Collective calls (`state_dict`, `save`, `offload`, `reload`) go to every rank.

A worker that dies or raises ends the call with a `RunError` naming the role, the rank and the
Ray error — never a hang or a bare traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from rlhf_train.errors import RunError
from rlhf_train.experience import ExperienceBatch
from rlhf_train.rollout.base import Generation, SamplingParams

log = logging.getLogger("rlhf_train")


def even_parts(total: int, parts: int) -> list[slice]:
    """`total` items in `parts` contiguous slices whose sizes differ by at most one (larger first)."""
    base, extra = divmod(total, parts)
    out, start = [], 0
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        out.append(slice(start, start + size))
        start += size
    return out


def equal_parts(total: int, parts: int) -> list[torch.Tensor]:
    """Row indices of `parts` contiguous parts of ⌈total / parts⌉ rows each: the rows past the end
    repeat the last row, so the concatenated answers are the `total` wanted followed by padding."""
    size = -(-total // parts)
    return [torch.arange(r * size, (r + 1) * size).clamp(max=total - 1) for r in range(parts)]


@dataclass(frozen=True)
class WorkerInfo:
    role: str
    rank: int
    pid: int
    node_id: str
    host: str

    def as_json(self) -> dict:
        return {"role": self.role, "rank": self.rank, "pid": self.pid, "node_id": self.node_id, "host": self.host}


class RoleGroup:
    """The Ray actors of one role, rank order; `ring_size` consecutive ranks form one ring
    (sequence parallelism, `[ring_attention].size`) and share each inference part."""

    def __init__(self, role: str, handles: list, ring_size: int = 1) -> None:
        self.role = role
        self.handles = handles
        self.ring_size = ring_size
        self.infos: list[WorkerInfo] = []

    @property
    def size(self) -> int:
        return len(self.handles)

    def get(self, refs: list) -> list:
        """The answers of one call per rank, in rank order (`get_calls`)."""
        return get_calls([(self, rank, ref) for rank, ref in enumerate(refs)])

    def describe(self, rank: int) -> str:
        pid = self.infos[rank].pid if rank < len(self.infos) else "?"
        return f"the {self.role} worker (rank {rank}, pid {pid})"

    def all(self, method: str, *args) -> list:
        """`method(*args)` on every rank; the answers in rank order."""
        return self.get([getattr(h, method).remote(*args) for h in self.handles])

    def where(self) -> list[WorkerInfo]:
        self.infos = [WorkerInfo(role=self.role, rank=rank, **info) for rank, info in enumerate(self.all("where"))]
        return self.infos

    def map_batch(self, method: str, batch: ExperienceBatch) -> torch.Tensor:
        """`method(part)` on rank-order parts of `batch`, one part per ring (every rank of a ring
        gets its ring's part and answers the same); the answers concatenated (inference). Every
        part has the same size (see `equal_parts`): under ZeRO-3 each forward pass gathers
        parameters from all ranks, so ranks running different numbers of them would wait for each
        other forever. A ring's part counts all of its samples (rollout_batch_size ×
        n_samples_per_prompt / rings), packed ring-wide."""
        parts = equal_parts(batch.size, self.size // self.ring_size)
        outs = self.get([getattr(h, method).remote(batch.select(parts[rank // self.ring_size]))
                         for rank, h in enumerate(self.handles)])
        return torch.cat(outs[::self.ring_size], dim=0)[:batch.size]

    def offload(self) -> list:
        return self.all("offload")

    def reload(self) -> list:
        return self.all("reload")

    def save_state(self, directory: Path) -> None:
        """Every rank writes its part of the role's checkpoint into `directory` (actor, critic)."""
        self.all("save_state", str(directory))

    def load_state(self, directory: Path) -> None:
        self.all("load_state", str(directory))


def get_calls(calls: list[tuple[RoleGroup, int, object]]) -> list:
    """The answers of calls `(group, rank, ref)`, in the order given. The first failure to arrive
    ends the wait (other ranks may be blocked in a collective with the failed one) as a `RunError`
    naming the role and rank."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    refs = [ref for _, _, ref in calls]
    results: dict[int, object] = {}
    pending = list(refs)
    while pending:
        (ref,), pending = ray.wait(pending, num_returns=1)
        index = refs.index(ref)
        group, rank, _ = calls[index]
        try:
            results[index] = ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, RunError):
                raise RunError(str(cause)) from None
            what = f"{type(cause).__name__}: {cause}" if cause is not None else _first_line(exc)
            raise RunError(f"the {group.role} worker (rank {rank}) failed: {what}") from None
        except RayActorError as exc:
            raise RunError(f"{group.describe(rank)} died: {_first_line(exc)}") from None
    return [results[i] for i in range(len(refs))]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class ActorGroup(RoleGroup):
    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return self.map_batch("log_probs", batch)

    def fit(self, batch: ExperienceBatch, kl_coef: float, seed: int) -> dict[str, float]:
        import ray

        shared = ray.put(batch)
        return self.all("fit", shared, kl_coef, seed)[0]

    def save(self, directory: Path, tokenizer) -> None:
        """Rank 0 writes the model in HF format (every rank takes part in gathering it); the
        controller adds the tokenizer. Several nodes need `directory` on a shared filesystem."""
        self.all("save", str(directory))
        tokenizer.save_pretrained(directory)


class ReferenceGroup(RoleGroup):
    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return self.map_batch("log_probs", batch)


class CriticGroup(RoleGroup):
    def values(self, batch: ExperienceBatch) -> torch.Tensor:
        return self.map_batch("values", batch)

    def fit(self, batch: ExperienceBatch, seed: int) -> dict[str, float]:
        import ray

        return self.all("fit", ray.put(batch), seed)[0]


class RewardGroup(RoleGroup):
    def scores(self, prompts: list[str], responses: list[str], labels: list[str]) -> torch.Tensor:
        parts = [s for s in even_parts(len(prompts), self.size) if s.stop > s.start]
        outs = self.get([h.scores.remote(prompts[s], responses[s], labels[s]) for h, s in zip(self.handles, parts)])
        return torch.cat(outs, dim=0)


class EngineGroup(RoleGroup):
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """Prompts split over the engines (each prompt's n samples stay on one engine, contiguous);
        engine i samples with seed + i so no two engines draw the same stream."""
        parts = [s for s in even_parts(len(prompt_ids), self.size) if s.stop > s.start]
        outs = self.get([h.generate.remote(prompt_ids[s], replace(params, seed=params.seed + i))
                         for i, (h, s) in enumerate(zip(self.handles, parts))])
        return Generation(prompt_ids=[p for g in outs for p in g.prompt_ids],
                          response_ids=[r for g in outs for r in g.response_ids],
                          truncated=[t for g in outs for t in g.truncated])

    def response_log_probs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        """Per engine, the log-probs of the same samples under its weights (one list per engine)."""
        return self.all("response_log_probs", prompt_ids, response_ids)

    def sleep(self) -> None:
        self.all("sleep")

    def wake_up(self) -> None:
        self.all("wake_up")


class WeightSync:
    """The actor → engines weight sync, set up on first use (`connect`): the bucket plan from the
    actor's rank 0, then one of two paths —

    - `ipc`: every engine shares its GPU with actor rank i (the hybrid engine; GPU UUIDs compared):
      each such rank hands its engine every gathered bucket by CUDA IPC handle (`cuda_ipc.py`);
    - `broadcast`: a group of 1 + Σ engine ranks meeting at the actor's rank 0, which broadcasts
      every gathered bucket (`weight_sync.py`; NCCL on GPUs, gloo on the CPU). An engine of
      `ranks_per_engine` workers (vLLM tensor parallelism) holds that many consecutive ranks.

    Every actor rank takes part in each sync (ZeRO-3 gathers are collective)."""

    def __init__(self, actor: ActorGroup, engines: EngineGroup, ranks_per_engine: int, bucket_bytes: int,
                 timeout_s: float) -> None:
        self.actor, self.engines = actor, engines
        self.ranks_per_engine = ranks_per_engine
        self.bucket_bytes = bucket_bytes
        self.timeout_s = timeout_s
        self.plan: list = []
        self.mode = ""

    def connect(self) -> None:
        from rlhf_train.distributed.cuda_ipc import same_gpus

        sender = self.actor.handles[0]
        self.plan = self.actor.get([sender.weight_plan.remote(self.bucket_bytes)])[0]
        if self.ranks_per_engine == 1 and same_gpus(self.actor.all("gpu_uuid"), self.engines.all("gpu_uuid")):
            self.mode = "ipc"
            log.info("weight sync: weights by cuda ipc, %d buckets (every engine on its actor rank's GPU)",
                     len(self.plan))
            return
        address, port = self.actor.get([sender.rendezvous.remote()])[0]
        world = 1 + self.engines.size * self.ranks_per_engine
        calls = [(self.actor, 0, sender.join_weight_group.remote(address, port, world, self.timeout_s))]
        calls += [(self.engines, i, h.join_weight_group.remote(address, port, 1 + i * self.ranks_per_engine, world,
                                                                self.timeout_s))
                  for i, h in enumerate(self.engines.handles)]
        get_calls(calls)
        self.mode = "broadcast"
        log.info("weight sync: %d buckets broadcast from actor rank 0 to %d engine ranks", len(self.plan), world - 1)

    def __call__(self) -> None:
        if not self.mode:
            self.connect()
        if self.mode == "ipc":
            engines = self.engines.handles
            self.actor.get([h.send_weights_ipc.remote(self.plan, engines[r] if r < len(engines) else None)
                            for r, h in enumerate(self.actor.handles)])
            return
        calls = [(self.actor, r, h.send_weights.remote(self.plan)) for r, h in enumerate(self.actor.handles)]
        calls += [(self.engines, i, h.receive_weights.remote(self.plan)) for i, h in enumerate(self.engines.handles)]
        get_calls(calls)
