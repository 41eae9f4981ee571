"""The NVML wrapper and the GPU sampler.

Two halves: first the real situation of a CPU-only machine (no NVIDIA driver: NVML is unavailable,
one `gpu` event says why, no thread, real host numbers); then a FAKE `pynvml` standing in for the
driver such a machine lacks, to check the wrapper's handling of missing readings and the thread's
timing. The real-GPU counterpart is tests/gpu/test_nvml_gpu.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import types
from dataclasses import dataclass

import pytest

from rlhf_train.telemetry import nvml
from rlhf_train.telemetry.protocol import decode_event, encode_event
from rlhf_train.telemetry.sampler import NVML_DISABLED, GpuSampler, rss_bytes

GiB = 1024**3


class Recorder:
    """Stands in for `Emitter.emit`: keeps (type, fields, time) and checks each event encodes."""

    def __init__(self):
        self.events: list[tuple[str, dict, float]] = []
        self.lock = threading.Lock()

    def __call__(self, type_, **fields):
        decode_event(encode_event(1, time.time(), type_, fields))  # valid protocol JSON
        with self.lock:
            self.events.append((type_, fields, time.monotonic()))
        return len(self.events)

    def wait_for(self, n: int, timeout: float = 2.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= n:
                    return list(self.events)
            time.sleep(0.005)
        raise AssertionError(f"only {len(self.events)} of {n} events within {timeout} s")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: /proc/<pid> is gone (pid reuse within the test is vanishingly unlikely)


@pytest.fixture(autouse=True)
def fresh_nvml():
    """Each test starts with NVML uninitialised (the wrapper caches its state per process)."""
    nvml.shutdown()
    yield
    nvml.shutdown()


# -- the real machine: no driver -------------------------------------------------------------------

def _real_nvml_present() -> bool:
    ok, _ = nvml.nvml_available()
    nvml.shutdown()
    return ok


no_driver = pytest.mark.skipif(_real_nvml_present(), reason="this machine has a working NVML")


@no_driver
def test_nvml_unavailable_says_why():
    ok, reason = nvml.nvml_available()
    assert ok is False
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert "pynvml not installed" in reason and "nvidia-ml-py" in reason
    else:
        assert "NVML not found" in reason and "libnvidia-ml.so.1" in reason
    assert nvml.read_devices() == []
    assert nvml.nvml_available() == (False, reason)  # cached, still never raises
    nvml.shutdown()  # shutting down what never started is fine


def test_pynvml_missing_is_a_reason_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert nvml.nvml_available() == (False, "pynvml not installed (pip install nvidia-ml-py); "
                                            "GPU memory is not sampled")
    assert nvml.read_devices() == []


@no_driver
def test_start_without_gpu_emits_one_event_and_no_thread():
    rec = Recorder()
    me, gone = os.getpid(), dead_pid()
    before = set(threading.enumerate())
    sampler = GpuSampler(rec, interval_s=0.01, role_pids={me: "actor", gone: "critic"})
    sampler.start()
    time.sleep(0.05)  # five intervals: a thread, had one started, would have emitted again
    assert set(threading.enumerate()) == before
    assert not sampler.running
    assert len(rec.events) == 1
    type_, fields, _ = rec.events[0]
    assert type_ == "gpu"
    assert fields["devices"] == []
    assert fields["reason"] == nvml.nvml_available()[1] and fields["reason"]
    host = fields["host"]
    assert host["total_bytes"] > 0 and 0 < host["available_bytes"] <= host["total_bytes"]
    by_pid = {p["pid"]: p for p in host["processes"]}
    assert by_pid[me]["role"] == "actor" and by_pid[me]["rss_bytes"] > 1024 * 1024
    assert by_pid[gone] == {"pid": gone, "role": "critic", "rss_bytes": None}
    sampler.stop()  # nothing to join
    assert len(rec.events) == 1


def test_host_rss_is_this_process():
    """RSS from /proc/<pid>/statm agrees with /proc/self/status VmRSS (same kernel counter)."""
    with open("/proc/self/status") as f:
        vmrss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    assert abs(rss_bytes(os.getpid()) - vmrss) < 16 * 1024 * 1024


def test_nvml_disabled_never_touches_nvml(monkeypatch):
    fake = FakeNvml([FakeGpu("A")])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    rec = Recorder()
    sampler = GpuSampler(rec, interval_s=0.01, nvml=False)
    sampler.start()
    time.sleep(0.03)
    assert not sampler.running
    assert [(t, f["devices"], f["reason"]) for t, f, _ in rec.events] == [("gpu", [], NVML_DISABLED)]
    assert fake.init_calls == 0


# -- a FAKE pynvml -------------------------------------------------------------------------------

@dataclass
class FakeGpu:
    name: str
    used: int = 1 * GiB
    total: int = 80 * GiB
    util: int = 40
    mem_util: int = 25
    temp: int | None = 61  # None: NVMLError_NotSupported
    power_mw: int | None = 312_500
    procs: list | None = None  # [(pid, used|None)]; None: listing raises
    memory_raises: Exception | None = None


class FakeNvml:
    """A FAKE `pynvml`, standing in for the NVIDIA driver (libnvidia-ml.so.1) this machine lacks.

    It mimics only the part of nvidia-ml-py's API the wrapper calls, with the same error classes
    (`NVMLError` with `.value`, `NVMLError_NotSupported` a subclass) and value shapes (memory info
    `.used/.total`, utilisation `.gpu/.memory`, power in milliwatts, processes with `.pid` and
    `.usedGpuMemory`). It proves our handling of its answers, not that real NVML answers so:
    tests/gpu/test_nvml_gpu.py checks that against a real GPU.
    """

    def __init__(self, gpus: list[FakeGpu]):
        self.gpus = gpus
        self.init_calls = 0
        self.shutdown_calls = 0
        m = types.ModuleType("pynvml")
        m.__doc__ = "FAKE pynvml for tests (no NVIDIA driver on this machine)"

        class NVMLError(Exception):
            def __init__(self, value):
                super().__init__(value)
                self.value = value

            def __str__(self):
                return {3: "Not Supported", 12: "NVML Shared Library Not Found"}.get(self.value, "Unknown Error")

        class NVMLError_NotSupported(NVMLError):
            def __init__(self):
                super().__init__(3)

        m.NVMLError, m.NVMLError_NotSupported = NVMLError, NVMLError_NotSupported
        m.NVML_ERROR_NOT_SUPPORTED, m.NVML_ERROR_LIBRARY_NOT_FOUND = 3, 12
        m.NVML_TEMPERATURE_GPU = 0

        def init():
            self.init_calls += 1

        def shutdown():
            self.shutdown_calls += 1

        def handle(i):
            return self.gpus[i]

        def memory(h):
            if h.memory_raises is not None:
                raise h.memory_raises
            return types.SimpleNamespace(used=h.used, total=h.total, free=h.total - h.used)

        def temperature(h, sensor):
            assert sensor == 0
            if h.temp is None:
                raise NVMLError_NotSupported()
            return h.temp

        def power(h):
            if h.power_mw is None:
                raise NVMLError_NotSupported()
            return h.power_mw

        def processes(h):
            if h.procs is None:
                raise NVMLError_NotSupported()
            return [types.SimpleNamespace(pid=p, usedGpuMemory=u) for p, u in h.procs]

        m.nvmlInit, m.nvmlShutdown = init, shutdown
        m.nvmlDeviceGetCount = lambda: len(self.gpus)
        m.nvmlDeviceGetHandleByIndex = handle
        m.nvmlDeviceGetName = lambda h: h.name
        m.nvmlDeviceGetUUID = lambda h: f"GPU-fake-{h.name}"
        m.nvmlDeviceGetMemoryInfo = memory
        m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=h.util, memory=h.mem_util)
        m.nvmlDeviceGetTemperature = temperature
        m.nvmlDeviceGetPowerUsage = power
        m.nvmlDeviceGetComputeRunningProcesses = processes
        self.module = m


@pytest.fixture
def two_gpus(monkeypatch):
    """GPU 0 reads fully; GPU 1 has no temperature, power or process listing (NotSupported)."""
    me = os.getpid()
    fake = FakeNvml([
        FakeGpu("H100", used=30 * GiB, procs=[(me, 20 * GiB), (4242, 9 * GiB), (5151, None)]),
        FakeGpu("T4", used=2 * GiB, total=16 * GiB, util=0, mem_util=3, temp=None, power_mw=None, procs=None),
    ])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    return fake


def test_wrapper_reads_each_field_on_its_own(two_gpus):
    assert nvml.nvml_available() == (True, "")
    a, b = nvml.read_devices()
    assert a == nvml.DeviceReading(index=0, name="H100", uuid="GPU-fake-H100", used_bytes=30 * GiB,
                                   total_bytes=80 * GiB, util_percent=40, mem_util_percent=25, temperature_c=61,
                                   power_w=312.5,
                                   processes=[(os.getpid(), 20 * GiB), (4242, 9 * GiB), (5151, None)])
    assert b == nvml.DeviceReading(index=1, name="T4", uuid="GPU-fake-T4", used_bytes=2 * GiB, total_bytes=16 * GiB,
                                   util_percent=0, mem_util_percent=3, temperature_c=None, power_w=None,
                                   processes=None)
    assert two_gpus.init_calls == 1  # lazily, once
    nvml.shutdown()
    assert two_gpus.shutdown_calls == 1


def test_init_is_lazy(two_gpus):
    GpuSampler(Recorder(), interval_s=1.0)  # constructing a sampler initialises nothing
    assert two_gpus.init_calls == 0
    nvml.read_devices()
    assert two_gpus.init_calls == 1


def test_library_not_found_reason(monkeypatch):
    fake = FakeNvml([])

    def no_library():
        raise fake.module.NVMLError(12)

    fake.module.nvmlInit = no_library
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    ok, reason = nvml.nvml_available()
    assert not ok and reason.startswith("NVML not found: libnvidia-ml.so.1 missing")


def test_no_gpus_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([]).module)
    assert nvml.nvml_available() == (False, "NVML found no GPUs")


def test_sampler_event_maps_processes_to_roles(two_gpus):
    me = os.getpid()
    fields = GpuSampler(Recorder(), role_pids={me: "actor", 4242: "vllm"}).sample_once()
    assert fields["reason"] is None
    d0, d1 = fields["devices"]
    assert d0 == {"index": 0, "name": "H100", "used_bytes": 30 * GiB, "total_bytes": 80 * GiB, "util_percent": 40,
                  "mem_util_percent": 25, "temperature_c": 61, "power_w": 312.5,
                  "processes": [{"pid": me, "used_bytes": 20 * GiB, "role": "actor"},
                                {"pid": 4242, "used_bytes": 9 * GiB, "role": "vllm"},
                                {"pid": 5151, "used_bytes": None, "role": None}]}
    assert (d1["temperature_c"], d1["power_w"], d1["processes"]) == (None, None, None)
    assert (d1["used_bytes"], d1["total_bytes"], d1["util_percent"]) == (2 * GiB, 16 * GiB, 0)
    host = fields["host"]
    assert [(p["pid"], p["role"]) for p in host["processes"]] == [(me, "actor"), (4242, "vllm")]
    assert host["processes"][0]["rss_bytes"] > 0


def test_thread_emits_at_the_interval_and_stops(two_gpus):
    rec = Recorder()
    roles = {}  # a callable: roles that appear later are picked up
    sampler = GpuSampler(rec, interval_s=0.02, role_pids=lambda: dict(roles))
    sampler.start()
    sampler.start()  # a second start is a no-op, not a second thread
    assert sampler.running
    assert sum(t.name == "rlhf-gpu-sampler" for t in threading.enumerate()) == 1
    events = rec.wait_for(3)
    roles[os.getpid()] = "actor"
    events = rec.wait_for(len(events) + 2)
    assert all(t == "gpu" and len(f["devices"]) == 2 for t, f, _ in events)
    gaps = [b[2] - a[2] for a, b in zip(events, events[1:])]
    assert min(gaps) >= 0.015 and sorted(gaps)[len(gaps) // 2] < 0.2
    assert events[-1][1]["devices"][0]["processes"][0]["role"] == "actor"
    t0 = time.monotonic()
    sampler.stop()
    assert time.monotonic() - t0 < 0.5 and not sampler.running
    assert not any(t.name == "rlhf-gpu-sampler" for t in threading.enumerate())
    n = len(rec.events)
    time.sleep(0.06)
    assert len(rec.events) == n


def test_failing_readings_never_kill_the_thread(two_gpus, caplog):
    two_gpus.gpus[0].memory_raises = RuntimeError("driver hiccup")  # not even an NVMLError
    calls = {"n": 0}

    def flaky_roles():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyError("role table being rebuilt")
        return {os.getpid(): "actor"}

    emitted = Recorder()

    def flaky_emit(type_, **fields):
        if len(emitted.events) == 1 and not getattr(flaky_emit, "failed", False):
            flaky_emit.failed = True
            raise OSError("events.jsonl: disk full")
        return emitted(type_, **fields)

    sampler = GpuSampler(flaky_emit, interval_s=0.01, role_pids=flaky_roles)
    with caplog.at_level("DEBUG", logger="rlhf_train.telemetry"):
        sampler.start()
        events = emitted.wait_for(4)
        sampler.stop()
    d0 = events[-1][1]["devices"][0]
    assert (d0["used_bytes"], d0["total_bytes"]) == (None, None)
    assert (d0["util_percent"], d0["temperature_c"], d0["name"]) == (40, 61, "H100")
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("role table being rebuilt" in m for m in messages)
    assert any("disk full" in m for m in messages)
    assert any("driver hiccup" in r.getMessage() for r in caplog.records)


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s"):
        GpuSampler(Recorder(), interval_s=0)


def test_a_sample_after_a_hybrid_move_is_tagged_with_it(two_gpus):
    rec = Recorder()
    sampler = GpuSampler(rec, role_pids={os.getpid(): "vllm"})
    sampler.sample_after_move("engine", "idle", "asleep")
    ((type_, fields, _),) = rec.events
    assert type_ == "gpu" and fields["transition"] == {"role": "engine", "from": "idle", "to": "asleep"}
    assert [d["used_bytes"] for d in fields["devices"]] == [30 * GiB, 2 * GiB]
    assert not sampler.running  # one event now, no thread started
