"""Timing and memory measurement: warm-up, then median and p90 of repeated runs.

Device work is timed with CUDA events on GPUs (host clocks would time the launch, not the work),
with `perf_counter` on CPUs. Memory: CUDA's peak allocation, or the process's resident set.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass
class Timing:
    median_ms: float
    p90_ms: float
    runs: int

    def as_dict(self) -> dict:
        return asdict(self)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, runs: int) -> Timing:
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    for _ in range(max(runs, 1)):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            fn()
            samples.append(1000 * (time.perf_counter() - began))
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return Timing(statistics.median(samples), p90, len(samples))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset. CPU: the resident set now (VmRSS), since the
    process peak (VmHWM) never goes down and would hide what a later phase needs."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _status_kib("VmRSS") / 1024
