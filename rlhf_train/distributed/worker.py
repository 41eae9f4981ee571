"""One rank of one role, living in its own Ray actor process (`groups.py` is the controller side).

A worker is created empty (no model) so that placement and process start-up are fast and can be
reported before anything heavy happens; `load` builds its model and role, and the role methods
(`log_probs`, `fit`, `generate`, ...) then run in the worker. Trained and reference roles of
several ranks join one torch.distributed group per role (gloo on CPU, nccl on GPU), rendezvous at
rank 0's address.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from pathlib import Path

import torch

from rlhf_train.config.schema import Preset
from rlhf_train.experience import ExperienceBatch
from rlhf_train.rollout.base import Generation, SamplingParams

log = logging.getLogger("rlhf_train")


def local_device_rank() -> int:
    """This worker's GPU as the process numbers devices (see `devices.local_device_index`); 0 without one."""
    import ray

    from rlhf_train.distributed.devices import local_device_index

    assigned = ray.get_gpu_ids()
    return local_device_index(assigned, os.environ) if assigned else 0


def local_device() -> torch.device:
    """The GPU Ray gave this worker, else the CPU."""
    return torch.device("cuda", local_device_rank()) if torch.cuda.is_available() else torch.device("cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class RoleWorker:
    def __init__(self, role: str, rank: int, world_size: int, preset: Preset, run_dir: str) -> None:
        self.role_name, self.rank, self.world_size, self.preset = role, rank, world_size, preset
        # a terminal's Ctrl-C reaches every process of its group: the controller alone answers it
        # (finish the step, save, stop), which needs the workers alive until then
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.run_dir = Path(run_dir)
        torch.set_num_threads(max(1, int(preset.placement.cpus_per_worker)))
        logs = Path(run_dir) / "workers"
        logs.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(logs / f"{role}-{rank}.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

    def where(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port on it (asked of rank 0: the role's process group meets there)."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def join(self, address: str, port: int) -> None:
        """Set the torch.distributed environment of this rank (the strategy initialises the group)."""
        os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK=str(local_device_rank()))

    def backend(self):
        """This rank's DeepSpeed strategy (joins the role's process group; `join` came first)."""
        import torch.distributed as dist

        from rlhf_train.distributed.strategy import DeepSpeedStrategy

        strategy = DeepSpeedStrategy(self.preset.ring_attention)
        log.info("%s rank %d of %d: torch.distributed backend %s on %s", self.role_name, strategy.rank,
                 strategy.world_size, dist.get_backend(), strategy.device)
        return strategy

    def gpu_uuid(self) -> str | None:
        """The UUID of this worker's GPU (None on the CPU): tells which workers share a GPU."""
        from rlhf_train.distributed.cuda_ipc import gpu_uuid

        return gpu_uuid()

    def offload(self):
        return self.role.offload()

    def reload(self):
        return self.role.reload()

    def save_state(self, directory: str) -> None:
        """A trained role's checkpoint of this rank (`roles.save_training_state`; actor and critic)."""
        self.role.save_state(Path(directory))

    def load_state(self, directory: str) -> None:
        self.role.load_state(Path(directory))


class ActorWorker(RoleWorker):
    def load(self, total_optimizer_steps: int) -> int:
        from rlhf_train.models.actor import Actor
        from rlhf_train.models.loading import load_model_and_tokenizer
        from rlhf_train.roles import ActorRole

        m = self.preset.model
        model, self.tokenizer = load_model_and_tokenizer(m.actor, dtype=m.dtype, seed=self.preset.run.seed)
        self.role = ActorRole(Actor(model), self.preset, total_optimizer_steps, backend=self.backend())
        return sum(p.numel() for p in model.parameters())

    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return self.role.log_probs(batch)

    def fit(self, batch: ExperienceBatch, kl_coef: float, seed: int) -> dict[str, float]:
        return self.role.fit(batch, kl_coef, seed)

    def weight_plan(self, bucket_bytes: int) -> list:
        return self.role.weight_plan(bucket_bytes)

    def join_weight_group(self, address: str, port: int, world_size: int, timeout_s: float) -> None:
        """Rank 0 only: host the weight-sync group (its rank 0) at `address:port`."""
        from rlhf_train.distributed.weight_sync import BroadcastGroup

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        self.weight_group = BroadcastGroup(address, port, 0, world_size, backend, timeout_s)

    def send_weights(self, plan: list) -> None:
        """Every rank gathers each bucket; rank 0 broadcasts it to the engines."""
        group = self.weight_group if self.rank == 0 else None
        send = (lambda bucket, flat: group.send(flat)) if group else None
        self.role.send_weights(plan, send, group.device if group else local_device())

    def send_weights_ipc(self, plan: list, engine) -> None:
        """Every rank gathers each bucket; a rank sharing its GPU with `engine` (a Ray handle, or
        None) hands it each bucket by CUDA IPC handle and waits until the engine has copied it."""
        import ray

        from rlhf_train.distributed.cuda_ipc import share

        def send(bucket, flat) -> None:
            torch.cuda.synchronize()  # the gathered values are in the buffer before the engine reads it
            ray.get(engine.receive_ipc.remote(bucket, share(flat)))

        self.role.send_weights(plan, send if engine is not None else None, local_device())
        if engine is not None:
            ray.get(engine.finish_ipc.remote())

    def save(self, directory: str) -> None:
        self.role.save(Path(directory), self.tokenizer)


class ReferenceWorker(RoleWorker):
    def load(self) -> int:
        from rlhf_train.models.actor import Actor
        from rlhf_train.models.loading import load_model_and_tokenizer
        from rlhf_train.roles import ReferenceRole

        m = self.preset.model
        model, _ = load_model_and_tokenizer(m.reference or m.actor, dtype=m.dtype, seed=self.preset.run.seed,
                                            for_role="reference")
        self.role = ReferenceRole(Actor(model), self.preset, backend=self.backend())
        return sum(p.numel() for p in model.parameters())

    def log_probs(self, batch: ExperienceBatch) -> torch.Tensor:
        return self.role.log_probs(batch)


class CriticWorker(RoleWorker):
    def load(self, total_optimizer_steps: int) -> int:
        from rlhf_train.models.critic import Critic
        from rlhf_train.roles import CriticRole

        m = self.preset.model
        critic, _ = Critic.from_spec(self.preset.critic_init, dtype=m.dtype, seed=self.preset.run.seed)
        self.role = CriticRole(critic, self.preset, total_optimizer_steps, backend=self.backend())
        return sum(p.numel() for p in critic.parameters())

    def values(self, batch: ExperienceBatch) -> torch.Tensor:
        return self.role.values(batch)

    def fit(self, batch: ExperienceBatch, seed: int) -> dict[str, float]:
        return self.role.fit(batch, seed)


class RewardWorker(RoleWorker):
    def load(self) -> int:
        from rlhf_train.rewards.source import model_scorer

        self.score = model_scorer(self.preset.reward.model, dtype=self.preset.model.dtype, seed=self.preset.run.seed,
                                  device=local_device())
        return 0

    def scores(self, prompts: list[str], responses: list[str], labels: list[str]) -> torch.Tensor:
        return torch.as_tensor(self.score(prompts, responses, labels), dtype=torch.float32)


class EngineWorker(RoleWorker):
    """One rollout engine over its own copy of the policy, synced from the actor after every
    update: the HF engine, or vLLM (`[rollout].engine`), which reads the model from a directory
    (a non-directory spec is written out under the run directory first)."""

    def load(self, bundle_indices: tuple[int, ...] = ()) -> int:
        from rlhf_train.build import hf_engine
        from rlhf_train.models.loading import load_model_and_tokenizer, resolve_model_spec

        m = self.preset.model
        model, tokenizer = load_model_and_tokenizer(m.actor, dtype=m.dtype, seed=self.preset.run.seed)
        count = sum(p.numel() for p in model.parameters())
        if self.preset.rollout.engine == "hf":
            self.engine = hf_engine(model.requires_grad_(False).to(local_device()), tokenizer, self.preset,
                                    shared=False)
            return count
        from rlhf_train.rollout.vllm_engine import VLLMEngine, settings_from_preset

        source = resolve_model_spec(m.actor)
        if source.kind == "directory":
            model_dir = str(source.path)
        else:
            model_dir = str(self.run_dir / "engine-models" / f"engine-{self.rank}")
            model.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
        settings = settings_from_preset(self.preset, model_dir, model.config, self.rank, tuple(bundle_indices))
        del model
        self.engine = VLLMEngine(settings, eos_ids={tokenizer.eos_token_id})
        return count

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        return self.engine.generate(prompt_ids, params)

    def join_weight_group(self, address: str, port: int, rank: int, world_size: int, timeout_s: float) -> None:
        self.engine.join_weight_group(address, port, rank, world_size, timeout_s)

    def receive_weights(self, plan: list) -> None:
        self.engine.receive_weights(plan)

    def receive_ipc(self, bucket, handle: tuple) -> None:
        self.engine.receive_ipc(bucket, handle)

    def finish_ipc(self) -> None:
        self.engine.finish_ipc()

    def response_log_probs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        return self.engine.response_log_probs(prompt_ids, response_ids)

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()


WORKER_CLASSES = {"actor": ActorWorker, "reference": ReferenceWorker, "critic": CriticWorker,
                  "reward": RewardWorker, "engine": EngineWorker}
DISTRIBUTED_ROLES = ("actor", "reference", "critic")
"""Roles whose ranks form a torch.distributed group (DeepSpeed)."""
