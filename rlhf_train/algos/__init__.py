"""Pure tensor math of RLHF: KL estimators, advantages, policy/value losses, masks.

No I/O, no Ray, no DeepSpeed; every function works in any float dtype and is checked in float64
against exact enumeration (tests/unit/test_algos_*.py).
"""

from .advantages import (
    ADVANTAGE_ESTIMATORS,
    AdvantageEstimator,
    baseline_scores,
    compute_advantages,
    gae,
    group_norm_scores,
    normalize_advantages,
    returns_to_go,
    rloo_scores,
    shape_scores,
)
from .kl import (
    K3_LOG_RATIO_CLAMP,
    KL_ESTIMATORS,
    KLEstimator,
    approx_kl,
    kl_penalized_rewards,
    last_valid_index,
    log_ratio,
)
from .losses import (
    PolicyLossOutput,
    entropy_from_logits,
    kl_loss,
    log_probs_from_logits,
    policy_loss,
    value_loss,
)
from .masks import (
    AGG_MODES,
    AggMode,
    aggregate_loss,
    masked_count,
    masked_mean,
    masked_sum,
    packed_to_padded,
    padded_to_packed,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AGG_MODES",
    "AdvantageEstimator",
    "AggMode",
    "K3_LOG_RATIO_CLAMP",
    "KLEstimator",
    "KL_ESTIMATORS",
    "PolicyLossOutput",
    "aggregate_loss",
    "approx_kl",
    "baseline_scores",
    "compute_advantages",
    "entropy_from_logits",
    "gae",
    "group_norm_scores",
    "kl_loss",
    "kl_penalized_rewards",
    "last_valid_index",
    "log_probs_from_logits",
    "log_ratio",
    "masked_count",
    "masked_mean",
    "masked_sum",
    "normalize_advantages",
    "packed_to_padded",
    "padded_to_packed",
    "policy_loss",
    "returns_to_go",
    "rloo_scores",
    "shape_scores",
    "value_loss",
]
