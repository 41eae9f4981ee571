"""Checkpoints and exact resume: the atomic on-disk store (`store`), what a checkpoint holds for
the trainer and the random generators (`state`), and reopening a run directory to continue it
(`resume`)."""
