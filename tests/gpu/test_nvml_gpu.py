"""The NVML wrapper against a real GPU and driver (skipped without CUDA by tests/conftest.py).

The unit tests (tests/unit/test_telemetry_sampler.py) use a fake pynvml; these check that real
NVML answers the way that fake assumes: memory in bytes, an allocation visible at once, and our
process in the per-process list.
"""

from __future__ import annotations

import os
import time

import pytest

from rlhf_train.telemetry import nvml
from rlhf_train.telemetry.sampler import GpuSampler

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    ok, reason = nvml.nvml_available()
    assert ok, f"CUDA works but NVML does not: {reason}"
    return torch


def _reading_of_cuda0(torch) -> nvml.DeviceReading:
    """The NVML reading of the device torch calls cuda:0 (NVML numbers all GPUs in PCI order and
    ignores CUDA_VISIBLE_DEVICES, so match by UUID where torch gives one)."""
    devices = nvml.read_devices()
    uuid = str(getattr(torch.cuda.get_device_properties(0), "uuid", "") or "")
    if uuid:
        matches = [d for d in devices if d.uuid and d.uuid.removeprefix("GPU-") == uuid.removeprefix("GPU-")]
        if matches:
            return matches[0]
    assert len(devices) == 1 or not os.environ.get("CUDA_VISIBLE_DEVICES"), \
        "cannot tell which NVML device is cuda:0"
    return devices[0]


def test_read_devices(torch):
    devices = nvml.read_devices()
    assert len(devices) >= 1
    for d in devices:
        assert d.total_bytes and d.total_bytes > 0, d
        assert d.used_bytes is not None and 0 <= d.used_bytes <= d.total_bytes, d
        assert d.name and d.uuid, d


def test_allocation_shows_in_the_next_reading(torch):
    torch.ones(1, device="cuda:0")  # create the CUDA context first: it has its own footprint
    torch.cuda.synchronize()
    before = _reading_of_cuda0(torch).used_bytes
    x = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda:0")
    x.fill_(1)
    torch.cuda.synchronize()
    after = _reading_of_cuda0(torch).used_bytes
    try:
        assert after - before >= 200 * MiB, f"used {before} → {after} bytes after allocating 256 MiB"
    finally:
        del x
        torch.cuda.empty_cache()


def test_our_process_is_listed(torch):
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="cuda:0")
    torch.cuda.synchronize()
    processes = _reading_of_cuda0(torch).processes
    del x
    if processes is None:
        pytest.skip("this driver does not list processes (NotSupported)")
    pids = {pid for pid, _ in processes}
    if os.getpid() not in pids and pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids):
        pytest.skip(f"NVML reports pids {sorted(pids)} from another pid namespace (a container); "
                    f"ours here is {os.getpid()}")
    assert os.getpid() in pids, f"pid {os.getpid()} not in NVML's processes {processes}"
    used = dict(processes)[os.getpid()]
    if used is not None:  # None: per-process memory not reported (e.g. some vGPU/MIG setups)
        assert used >= 64 * MiB


def test_sampler_thread_emits_real_devices(torch):
    events = []
    sampler = GpuSampler(lambda type_, **f: events.append((type_, f)), interval_s=0.05,
                         role_pids={os.getpid(): "actor"})
    sampler.start()
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert len(events) >= 2 and not sampler.running
    fields = events[-1][1]
    assert fields["reason"] is None and fields["devices"]
    assert fields["devices"][0]["total_bytes"] > 0
    assert fields["host"]["processes"][0]["rss_bytes"] > 0
