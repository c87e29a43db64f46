"""Wall-clock timing, peak memory and the device's nominal peak throughput.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` (tensors only, allocator cache excluded). On CPU
the process's peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
resident set before the measured block; tracemalloc cannot see torch's allocations.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

DENSE_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    # Vendor figures without sparsity. fp8 storage computes in bf16, so it uses the bf16 peak.
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp8": 989.0, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp8": 756.0, "fp32": 51.0},
    "H100 NVL": {"bf16": 835.0, "fp16": 835.0, "fp8": 835.0, "fp32": 60.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp8": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp8": 312.0, "fp32": 19.5},
}
"""Nominal dense peaks (TFLOP/s) by device-name substring, most specific first. fp32 is without
TF32 (PyTorch's default for matmuls; convolutions may use TF32 through cuDNN)."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


class CallTimer:
    """Times each ``timer(fn)`` call without stalling a GPU: CUDA events there, perf_counter on CPU.

    On CPU it also records the process's CPU time per call (all threads): on a machine shared with
    other jobs that is the steadier figure, since waiting for a core does not count.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._wall: list[float] = []
        self._cpu: list[float] = []
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def __call__(self, fn: Callable[[], T]) -> T:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            self._events.append((start, end))
        else:
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            self._wall.append(time.perf_counter() - wall)
            self._cpu.append(time.process_time() - cpu)
        return result

    def clear(self) -> None:
        self._wall.clear()
        self._cpu.clear()
        self._events.clear()

    def seconds(self) -> list[float]:
        if self.device.type == "cuda":
            synchronize(self.device)
            return [start.elapsed_time(end) / 1e3 for start, end in self._events]
        return list(self._wall)

    def cpu_seconds(self) -> list[float]:
        """Process CPU time per call (CPU device only; empty on CUDA)."""
        return list(self._cpu)


def median(values: list[float]) -> float:
    return statistics.median(values)


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """``with PeakMemory(device) as mem: ...`` then ``mem.peak_bytes`` and ``mem.delta_bytes``.

    CUDA: peak = max allocated during the block (weights included), delta = peak - allocated before.
    CPU: peak = peak RSS during the block, delta = peak - RSS before (weights already resident
    are excluded). Both are None where the platform cannot tell.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes: int | None = None
        self.delta_bytes: int | None = None
        self._before = 0
        self._cpu_supported = True

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as refs:
                    refs.write("5")  # resets VmHWM to the current RSS
                self._before = _proc_status_kib("VmRSS") * 1024
            except OSError:
                log.warning("cannot reset the peak RSS (%s): CPU peak memory not reported", platform.system())
                self._cpu_supported = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._cpu_supported:
            self.peak_bytes = _proc_status_kib("VmHWM") * 1024
        else:
            return
        self.delta_bytes = self.peak_bytes - self._before


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} threads ({os.cpu_count()} logical CPUs)"


def peak_tflops(device: torch.device, mode: str) -> float | None:
    """Nominal dense peak for this device and weight mode; None when unknown (CPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in DENSE_PEAK_TFLOPS.items():
        if key in name:
            return peaks.get(mode)
    return None


@dataclass(frozen=True)
class Throughput:
    tflops: float
    fraction_of_peak: float | None


def throughput(flops: float, seconds: float, peak: float | None) -> Throughput:
    achieved = flops / seconds / 1e12
    return Throughput(achieved, None if peak is None else achieved / peak)


def environment(device: torch.device) -> dict[str, object]:
    """What a figure was measured on."""
    info: dict[str, object] = {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "load_1m_at_start": os.getloadavg()[0],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info
