"""Distributed training: data-parallel ranks of each role trained through DeepSpeed
(`strategy`, `ds_config`, `ds_engine`), driven by the Ray placement.

The DeepSpeed modules never import Ray: they work in any `torch.distributed` process group (gloo on
CPU, nccl on GPU). Importing this package imports neither.
"""
