"""Generation with transformers' `generate`, on whatever device the model lives.

Used where vLLM is not: CPU machines, debugging, and the in-process `local` placement, where the
engine shares the actor's module so a weight sync costs nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from rlhf_train.errors import RunError
from rlhf_train.rollout.base import Generation, SamplingParams


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows to one width: (ids [B, W], attention mask [B, W])."""
    return pad_rows(rows, pad_id, left=True)


def pad_rows(rows: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token rows to the longest one's width W, on the left or the right: (ids [B, W], mask
    [B, W] with 1 on the rows' own tokens). One tensor copy of all tokens, no per-row tensors."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max()) if len(rows) else 0
    columns = torch.arange(width)
    mask = (columns >= width - lengths[:, None]) if left else (columns < lengths[:, None])
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    ids[mask] = torch.tensor([token for row in rows for token in row], dtype=torch.long)
    return ids, mask.long()


def cut_at_eos(tokens: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    """Tokens up to and including the first eos, and whether there was none (truncated)."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1], False
    return tokens, True


class HFEngine:
    """`RolloutEngine` over a causal LM. `shared=True` means the model *is* the actor's module, so
    `load_weights` has nothing to copy (and the engine cannot sleep).

    `sleep` releases every parameter's storage (buffers, which the state dict may not hold, stay);
    `wake_up` gives each parameter fresh, uninitialised storage on its device, which the next
    `load_weights` fills. `generate` refuses to run from `sleep` until that `load_weights`.
    """

    def __init__(self, model: nn.Module, pad_id: int, eos_ids: set[int], max_batch_samples: int = 64,
                 shared: bool = False):
        self.model = model
        self.pad_id = pad_id
        self.eos_ids = eos_ids
        self.max_batch_samples = max_batch_samples
        self.shared = shared
        self.released: dict[str, torch.Size] = {}  # parameter shapes while asleep
        self.awaiting_weights = False
        self.ipc_pending: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        if self.released or self.awaiting_weights:
            raise RunError("the hf engine cannot generate: it is asleep (its weights were released); "
                           "wake_up() and load_weights() come first")
        device = next(self.model.parameters()).device
        samples = [row for row in prompt_ids for _ in range(params.n)]  # each prompt n times, contiguous
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(params.seed)
        out = Generation([], [], [])
        try:
            for start in range(0, len(samples), self.max_batch_samples):
                chunk = samples[start:start + self.max_batch_samples]
                ids, mask = left_pad(chunk, self.pad_id)
                sampled = self.model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=params.max_new_tokens,
                    pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids), **_sampling_kwargs(params))
                for prompt, row in zip(chunk, sampled[:, ids.shape[1]:].tolist()):
                    response, truncated = cut_at_eos(row, self.eos_ids)
                    out.prompt_ids.append(prompt)
                    out.response_ids.append(response)
                    out.truncated.append(truncated)
        finally:
            torch.random.set_rng_state(generator_state)
        return out

    @torch.no_grad()
    def response_log_probs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        """log π(response token | everything before it) under the engine's current weights, per
        sample (temperature 1): what checks that a weight sync arrived."""
        device = next(self.model.parameters()).device
        out = []
        for prompt, response in zip(prompt_ids, response_ids, strict=True):
            ids = torch.tensor([prompt + response], dtype=torch.long, device=device)
            logits = self.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
            picked = logits.log_softmax(-1).gather(-1, ids[0, len(prompt):, None])[:, 0]
            out.append(picked.cpu().tolist())
        return out

    def join_weight_group(self, address: str, port: int, rank: int, world_size: int, timeout_s: float) -> None:
        """Join the actor's weight-sync broadcast group as `rank` (`distributed.weight_sync`)."""
        from rlhf_train.distributed.weight_sync import BroadcastGroup

        backend = "nccl" if next(self.model.parameters()).is_cuda else "gloo"
        self.weight_group = BroadcastGroup(address, port, rank, world_size, backend, timeout_s)

    def receive_weights(self, plan: list) -> None:
        """One sync's buckets from the weight-sync group, loaded (`join_weight_group` came first)."""
        from rlhf_train.distributed.weight_sync import receive_state

        self.load_weights(receive_state(self.weight_group, plan))

    def receive_ipc(self, bucket, handle: tuple) -> None:
        """One bucket shared by the actor rank on this GPU (`distributed.cuda_ipc`), copied out
        before returning (the sender frees it then); `finish_ipc` loads them all."""
        from rlhf_train.distributed.cuda_ipc import open_shared
        from rlhf_train.distributed.weight_sync import unflatten

        flat = open_shared(handle, next(self.model.parameters()).device.index)
        for name, view in unflatten(bucket, flat):
            self.ipc_pending[name] = view.clone()

    def finish_ipc(self) -> None:
        pending, self.ipc_pending = self.ipc_pending, {}
        self.load_weights(pending)

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        if self.released:
            raise RunError("the hf engine is asleep: wake_up() before load_weights()")
        if not self.shared:
            self.model.load_state_dict(state_dict)
        self.awaiting_weights = False

    def sleep(self) -> None:
        """Release the parameters' storage (the engine holds no KV cache between calls)."""
        if self.shared:
            raise RunError("the hf engine shares the actor's module (local placement) and cannot sleep")
        if self.released:
            return
        for name, param in self.model.named_parameters():
            self.released[name] = param.shape
            param.data = torch.empty(0, dtype=param.dtype, device=param.device)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def wake_up(self) -> None:
        """Fresh storage for every released parameter; its values come with the next `load_weights`."""
        if not self.released:
            return
        for name, param in self.model.named_parameters():
            param.data = torch.empty(self.released[name], dtype=param.dtype, device=param.device)
        self.released = {}
        self.awaiting_weights = True


def _sampling_kwargs(params: SamplingParams) -> dict:
    if params.temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p,
            "top_k": params.top_k if params.top_k > 0 else 0}  # 0 disables; None means 50
