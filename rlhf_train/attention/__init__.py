"""Sample packing and ring attention (sequence parallelism) for the actor, critic and reference.

    packing.py   padded rows → one packed row (cu_seqlens, per-sample positions) and back
    group.py     ring groups: sub-groups of a role's ranks that share one packed row
    ring.py      ring attention in pure torch (log-sum-exp merging, causal, segment-aware) + backward
    flash.py     the ring-flash-attn backend (GPU, optional; imported lazily)
    sequence.py  this rank's slice of a packed row, its attention, the gather back over the ring
    hf.py        `rlhf_ring` in transformers' attention registry
    forward.py   a model's packed forward pass over a ring

Importing this package imports neither torch nor transformers.
"""
