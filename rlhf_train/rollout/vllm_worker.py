"""Weight sync inside vLLM's workers: the `worker_extension_cls` vLLM mixes into each worker, so
`LLM.collective_rpc("rlhf_…")` runs these methods in every tensor-parallel worker process.

Each worker joins the actor's broadcast group (`distributed.weight_sync`) as `rank_offset` + its
tensor-parallel rank, receives every bucket of a sync and loads the full weights with vLLM's in-place
`reload_weights` (which shards them for tensor parallelism and re-runs the CPU backend's weight
packing; `model.load_weights` leaves a CPU model half-written, see ../shared/VLLM_CPU.md).
Arguments arrive as plain lists: vLLM's RPC does not carry tensors or our classes. A CUDA IPC
handle holds a function and bytes, which vLLM's multiprocess RPC carries only with
VLLM_ALLOW_INSECURE_SERIALIZATION=1 (set by the engine on GPUs).
"""

from __future__ import annotations

from rlhf_train.distributed.cuda_ipc import open_shared
from rlhf_train.distributed.weight_sync import BroadcastGroup, Bucket, receive_state, unflatten


class WeightSyncExtension:
    def rlhf_join_weight_group(self, address: str, port: int, rank_offset: int, world_size: int,
                               timeout_s: float) -> None:
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        self.rlhf_weight_group = BroadcastGroup(address, port, rank_offset + self.rank, world_size, backend, timeout_s)

    def rlhf_receive_weights(self, wire_plan: list) -> None:
        state = receive_state(self.rlhf_weight_group, [Bucket.from_wire(w) for w in wire_plan])
        self.model_runner.reload_weights(weights_iterator=iter(state.items()), is_checkpoint_format=True)

    def rlhf_receive_ipc(self, wire_bucket: list, handle: tuple) -> None:
        """One bucket by CUDA IPC handle from the actor rank on this GPU, copied out at once."""
        flat = open_shared(handle, self.device.index)
        pending = self.__dict__.setdefault("rlhf_ipc_pending", {})
        pending.update((name, view.clone()) for name, view in unflatten(Bucket.from_wire(wire_bucket), flat))

    def rlhf_finish_ipc(self) -> None:
        pending = self.__dict__.pop("rlhf_ipc_pending", {})
        self.model_runner.reload_weights(weights_iterator=iter(pending.items()), is_checkpoint_format=True)
