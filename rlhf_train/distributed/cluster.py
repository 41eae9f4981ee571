"""The Ray cluster a run uses, and leaving it as found.

- `[placement].address` set: join that cluster (`auto` = the one `ray start` made on this host,
  `ray://host:port` = a remote one). Leaving disconnects; the cluster stays.
- Ray already initialised in this process (a test session's shared cluster): use it as is.
- Otherwise start a local cluster, telling Ray at least as many CPUs as the placement asks for:
  Ray counts logical CPUs, and a 2-core machine asked for 2.5 would wait forever. Leaving shuts it
  down with every process it started.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from dataclasses import dataclass

from rlhf_train.config.schema import Preset
from rlhf_train.distributed.placement import GroupSpec

log = logging.getLogger("rlhf_train")
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"

WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "RAY_DEDUP_LOGS": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
"""Environment of every worker process."""


def cpus_needed(specs: list[GroupSpec]) -> float:
    return sum(bundle.get("CPU", 0.0) for spec in specs for bundle in spec.bundles)


@dataclass
class Cluster:
    """How this run is connected: `initialised` when it called `ray.init` (and so must shut down)."""

    initialised: bool
    address: str

    def close(self) -> None:
        import ray

        if self.initialised and ray.is_initialized():
            ray.shutdown()


def connect(preset: Preset, specs: list[GroupSpec]) -> Cluster:
    """Join, reuse or start the cluster (see the module docstring). The run's own SIGTERM and
    SIGINT handlers (stop after the step) are kept: `ray.init` installs its own, which abort."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _connect(preset, specs)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _connect(preset: Preset, specs: list[GroupSpec]) -> Cluster:
    import ray

    if ray.is_initialized():
        return Cluster(initialised=False, address="(this process's)")
    common = dict(log_to_driver=False, configure_logging=False, runtime_env={"env_vars": WORKER_ENV})
    address = preset.placement.address
    if address:
        ray.init(address=address, **common)
        return Cluster(initialised=True, address=address)
    cpus = max(os.cpu_count() or 1, math.ceil(cpus_needed(specs)) + 1)  # + 1 for the controller's tasks
    # Ray announces on the terminal that a new local cluster uses token authentication (the default);
    # that line is noise in a run's output: it goes to train.log instead.
    logging.getLogger(TOKEN_NOTICE_LOGGER).setLevel(logging.ERROR)
    # address="local": always a new cluster. Without it Ray joins whatever RAY_ADDRESS or the last
    # `ray start` on this machine points at, which [placement].address = "" does not ask for.
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, **common)
    log.info("started a local Ray cluster (%d logical CPUs; Ray's token authentication on by default)", cpus)
    return Cluster(initialised=True, address="local")
