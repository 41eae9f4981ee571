"""Rollout engines behind one interface: HF generate (any device) now, vLLM later."""
