"""Samples GPU and host memory into `gpu` events (see protocol.py). Importable without torch.

    sampler = GpuSampler(emitter.emit, interval_s=preset.telemetry.sample_interval_s,
                         role_pids={os.getpid(): "actor"}, nvml=preset.telemetry.nvml)
    sampler.start()     # NVML works: a daemon thread emits one `gpu` event every interval
    ...                 # no GPU / NVML off: exactly one `gpu` event (devices [], reason), no thread
    sampler.stop()

A `gpu` event's fields:

    devices: [{index, name, used_bytes, total_bytes, util_percent, mem_util_percent,
               temperature_c, power_w, processes: [{pid, used_bytes, role}] | null}]
    host:    {total_bytes, available_bytes, processes: [{pid, role, rss_bytes}]}
    reason:  null, or why `devices` is empty (no driver, pynvml missing, [telemetry] nvml = false)

Any reading may be null (not supported, process gone). The host sample (from /proc) rides along so
that offloading a model to host memory is visible next to the GPU memory it freed. Sampling errors
are logged to the "rlhf_train.telemetry" logger and never propagate; the thread keeps going.
`sample_once()` gives the same fields without emitting (the TUI uses it when no run is attached).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from rlhf_train.telemetry import nvml

log = logging.getLogger("rlhf_train.telemetry")

RolePids = Mapping[int, str] | Callable[[], Mapping[int, str]]

NVML_DISABLED = "GPU sampling disabled ([telemetry] nvml = false)"


def _meminfo() -> dict[str, int | None]:
    """MemTotal and MemAvailable from /proc/meminfo, in bytes (None where unreadable)."""
    found: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    found[key] = int(rest.split()[0]) * 1024  # the file says kB; it means KiB
    except (OSError, ValueError, IndexError) as exc:
        log.debug("/proc/meminfo: %s", exc)
    return {"total_bytes": found.get("MemTotal"), "available_bytes": found.get("MemAvailable")}


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4096


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` (/proc/<pid>/statm, 2nd field × page size); None when it is gone."""
    try:
        with open(f"/proc/{int(pid)}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _page_size()
    except (OSError, ValueError, IndexError):
        return None


def host_sample(role_pids: Mapping[int, str]) -> dict[str, Any]:
    """Host memory and the RSS of each role's process."""
    return {**_meminfo(),
            "processes": [{"pid": pid, "role": role, "rss_bytes": rss_bytes(pid)} for pid, role in role_pids.items()]}


def device_fields(reading: nvml.DeviceReading, role_pids: Mapping[int, str]) -> dict[str, Any]:
    """One `DeviceReading` as the `devices[]` entry of a `gpu` event (roles looked up by pid)."""
    procs = None
    if reading.processes is not None:
        procs = [{"pid": pid, "used_bytes": used, "role": role_pids.get(pid)} for pid, used in reading.processes]
    return {"index": reading.index, "name": reading.name, "used_bytes": reading.used_bytes,
            "total_bytes": reading.total_bytes, "util_percent": reading.util_percent,
            "mem_util_percent": reading.mem_util_percent, "temperature_c": reading.temperature_c,
            "power_w": reading.power_w, "processes": procs}


class GpuSampler:
    """Emits `gpu` events through `emit("gpu", **fields)` (e.g. `Emitter.emit`).

    `role_pids` maps pid → role ("actor", "critic", "vllm", ...), or is a callable returning such a
    map (read at every sample, so roles that start later are picked up). With `nvml=False`, or
    when NVML is unavailable, `start()` emits exactly one event (devices [], the reason, a host
    sample) and starts no thread.
    """

    def __init__(self, emit: Callable[..., Any], interval_s: float = 1.0,
                 role_pids: RolePids | None = None, nvml: bool = True):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self._emit = emit
        self.interval_s = float(interval_s)
        self._role_pids = role_pids if role_pids is not None else {}
        self.use_nvml = nvml
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._logged: set[str] = set()

    # -- sampling ----------------------------------------------------------------------------
    def _roles(self) -> dict[int, str]:
        try:
            source = self._role_pids() if callable(self._role_pids) else self._role_pids
            return {int(pid): str(role) for pid, role in dict(source).items()}
        except Exception as exc:
            self._log_error("reading role pids", exc)
            return {}

    def _availability(self) -> tuple[bool, str | None]:
        if not self.use_nvml:
            return False, NVML_DISABLED
        ok, reason = nvml.nvml_available()
        return ok, (None if ok else reason)

    def sample_once(self) -> dict[str, Any]:
        """The fields of one `gpu` event: {"devices": [...], "host": {...}, "reason": str | None}.
        Never raises."""
        roles = self._roles()
        ok, reason = self._availability()
        devices: list[dict[str, Any]] = []
        if ok:
            try:
                devices = [device_fields(r, roles) for r in nvml.read_devices()]
            except Exception as exc:
                self._log_error("reading GPUs", exc)
        try:
            host = host_sample(roles)
        except Exception as exc:
            self._log_error("reading host memory", exc)
            host = {"total_bytes": None, "available_bytes": None, "processes": []}
        return {"devices": devices, "host": host, "reason": reason}

    def sample_after_move(self, role: str, source: str, target: str) -> None:
        """One `gpu` event now, tagged with the hybrid-engine move that just finished (an engine
        asleep, states offloaded, ...), so memory is seen at every phase, not only every interval.
        Never raises."""
        try:
            self._emit("gpu", **self.sample_once(), transition={"role": role, "from": source, "to": target})
        except Exception as exc:
            self._log_error("emitting a gpu event", exc)

    def _emit_sample(self) -> None:
        try:
            self._emit("gpu", **self.sample_once())
        except Exception as exc:
            self._log_error("emitting a gpu event", exc)

    def _log_error(self, what: str, exc: BaseException) -> None:
        """A warning the first time a given error occurs; debug after that (no flood every second)."""
        key = f"{what}: {type(exc).__name__}: {exc}"
        if key in self._logged:
            log.debug("GPU sampler: %s", key)
        else:
            self._logged.add(key)
            log.warning("GPU sampler: %s (sampling goes on; repeats are logged at debug level)", key,
                        exc_info=exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._emit_sample()
            self._stop.wait(self.interval_s)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Begin sampling (once; a second call does nothing). Never raises for sampling errors."""
        if self._started:
            return
        self._started = True
        ok, _ = self._availability()
        if not ok:
            self._emit_sample()  # the one event saying why there is no GPU data; no thread
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rlhf-gpu-sampler", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread and wait for it (by default up to the interval plus a second, enough for a
        sample in flight). NVML itself stays initialised; `nvml.shutdown()` releases it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            wait = self.interval_s + 1.0 if timeout is None else timeout
            thread.join(wait)
            if thread.is_alive():
                log.warning("GPU sampler thread did not stop within %.1f s (an NVML call hung?); "
                            "it is a daemon and will not block exit", wait)
