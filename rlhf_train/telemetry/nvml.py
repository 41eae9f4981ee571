"""A thin wrapper over NVML (the `pynvml` module of the `nvidia-ml-py` package), in the manner of
nvitop's `api/libnvml`: importable without torch or a GPU, NVML initialised lazily on first use,
and every reading allowed to be missing.

    nvml_available() -> (True, "") | (False, "why not")      never raises
    read_devices()   -> [DeviceReading, ...]                  [] when NVML is unavailable; never raises
    shutdown()                                                release NVML; the next use initialises again

Each field of a `DeviceReading` is read in its own try/except and is `None` when that reading fails
(`NVMLError_NotSupported` on many consumer cards for power or per-process memory, a driver too old
for a function, ...): one failing reading never hides the others. Callers show `None` as N/A.

Device `index` is NVML's order (PCI bus order, all GPUs of the machine); it ignores
`CUDA_VISIBLE_DEVICES` and may differ from CUDA's numbering — match on `uuid` when that matters.
Process ids are those the driver reports: inside a container with its own pid namespace they are
the host's pids and will not match `os.getpid()`.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

log = logging.getLogger("rlhf_train.telemetry")

LIBRARY = "libnvidia-ml.so.1"

_lock = threading.Lock()
_nv: ModuleType | None = None  # the pynvml module, once nvmlInit succeeded
_failed: str | None = None  # why initialisation failed (cached until shutdown())


@dataclass(frozen=True)
class DeviceReading:
    """One GPU at one moment. Every field but `index` may be None (not readable on this device)."""

    index: int
    name: str | None = None
    uuid: str | None = None
    used_bytes: int | None = None
    total_bytes: int | None = None
    util_percent: int | None = None
    mem_util_percent: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    processes: list[tuple[int, int | None]] | None = None
    """(pid, used_bytes) of compute processes; used_bytes None where the driver does not report it;
    the whole list None when listing processes failed (unlike [] = none running)."""


def _import_pynvml() -> ModuleType:
    """The import hook (tests put a fake `pynvml` in `sys.modules` to stand in for a driver)."""
    return importlib.import_module("pynvml")


def _reason_for(nv: ModuleType, exc: BaseException) -> str:
    code = getattr(exc, "value", None)
    if code is not None and code == getattr(nv, "NVML_ERROR_LIBRARY_NOT_FOUND", object()):
        return (f"NVML not found: {LIBRARY} missing (no NVIDIA driver on this machine; "
                "GPU memory is not sampled)")
    if code is not None and code == getattr(nv, "NVML_ERROR_DRIVER_NOT_LOADED", object()):
        return "NVIDIA driver not loaded (is the kernel module installed? try `nvidia-smi`)"
    if code is not None and code == getattr(nv, "NVML_ERROR_NO_PERMISSION", object()):
        return "NVML: no permission to open the GPU devices (/dev/nvidia*)"
    return f"NVML failed to initialise: {exc or type(exc).__name__}"


def _ensure() -> tuple[ModuleType | None, str]:
    """Initialise NVML once; (module, "") or (None, reason). A failure is remembered until shutdown()."""
    global _nv, _failed
    with _lock:
        if _nv is not None:
            return _nv, ""
        if _failed is not None:
            return None, _failed
        try:
            nv = _import_pynvml()
        except ImportError:
            _failed = "pynvml not installed (pip install nvidia-ml-py); GPU memory is not sampled"
            return None, _failed
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError, or OSError/AttributeError from an odd install
            _failed = _reason_for(nv, exc)
            return None, _failed
        _nv = nv
        return nv, ""


def nvml_available() -> tuple[bool, str]:
    """(True, "") when NVML works and sees at least one GPU, else (False, the reason). Never raises."""
    nv, reason = _ensure()
    if nv is None:
        return False, reason
    try:
        count = nv.nvmlDeviceGetCount()
    except Exception as exc:
        return False, f"NVML could not count GPUs: {exc or type(exc).__name__}"
    if count == 0:
        return False, "NVML found no GPUs"
    return True, ""


def _read(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """One reading, or None when it fails (logged at debug level: unsupported readings are normal)."""
    try:
        return fn(*args)
    except Exception as exc:
        log.debug("NVML %s: %s: %s", what, type(exc).__name__, exc)
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _processes(nv: ModuleType, handle: Any) -> list[tuple[int, int | None]]:
    try:
        procs = nv.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception as exc:
        # A driver older than the v3 process struct: fall back to v2 (nvitop does the same).
        v2 = getattr(nv, "nvmlDeviceGetComputeRunningProcesses_v2", None)
        if v2 is None or type(exc).__name__ != "NVMLError_FunctionNotFound":
            raise
        procs = v2(handle)
    out = []
    for p in procs:
        used = getattr(p, "usedGpuMemory", None)
        out.append((int(p.pid), int(used) if used is not None else None))
    return out


def _read_device(nv: ModuleType, index: int) -> DeviceReading:
    handle = _read(f"handle of GPU {index}", nv.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return DeviceReading(index=index)
    mem = _read("memory", nv.nvmlDeviceGetMemoryInfo, handle)
    util = _read("utilisation", nv.nvmlDeviceGetUtilizationRates, handle)
    temp = _read("temperature", nv.nvmlDeviceGetTemperature, handle, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
    power_mw = _read("power", nv.nvmlDeviceGetPowerUsage, handle)
    return DeviceReading(
        index=index,
        name=_text(_read("name", nv.nvmlDeviceGetName, handle)),
        uuid=_text(_read("uuid", nv.nvmlDeviceGetUUID, handle)),
        used_bytes=_read("memory.used", lambda: int(mem.used)) if mem is not None else None,
        total_bytes=_read("memory.total", lambda: int(mem.total)) if mem is not None else None,
        util_percent=_read("utilisation.gpu", lambda: int(util.gpu)) if util is not None else None,
        mem_util_percent=_read("utilisation.memory", lambda: int(util.memory)) if util is not None else None,
        temperature_c=_read("temperature", int, temp) if temp is not None else None,
        power_w=_read("power", lambda: power_mw / 1000.0) if power_mw is not None else None,
        processes=_read("processes", _processes, nv, handle),
    )


def read_devices() -> list[DeviceReading]:
    """A reading of every GPU NVML sees; [] when NVML is unavailable. Never raises."""
    nv, _ = _ensure()
    if nv is None:
        return []
    count = _read("device count", nv.nvmlDeviceGetCount)
    if not count:
        return []
    return [_read_device(nv, i) for i in range(int(count))]


def shutdown() -> None:
    """Release NVML (if it was initialised) and forget any failure, so the next call tries afresh."""
    global _nv, _failed
    with _lock:
        nv, _nv, _failed = _nv, None, None
    if nv is not None:
        _read("shutdown", nv.nvmlShutdown)
