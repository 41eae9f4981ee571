"""Preset schema, loading, validation and the pre-flight plan. Imports no torch/ray/deepspeed/vllm."""

from rlhf_train.config.issues import PresetInvalid, PresetIssue
from rlhf_train.config.loader import LoadResult, check_preset, load_preset, validate_preset_dict
from rlhf_train.config.schema import SCHEMA_VERSION, SECTIONS, Preset

__all__ = ["SCHEMA_VERSION", "SECTIONS", "LoadResult", "Preset", "PresetInvalid", "PresetIssue", "check_preset",
           "load_preset", "validate_preset_dict"]
