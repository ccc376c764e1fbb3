"""Turning a device name ("auto", "cpu", "cuda:1", "mps") into a usable torch device."""

from __future__ import annotations

import functools

import torch

from hvc_runtime.utils.errors import OptionError


def resolve_device(name: str | torch.device) -> torch.device:
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise OptionError("device", name, f"not a device name ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", name, "CUDA is not available on this machine; use cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError("device", name, "MPS is not available on this machine; use cpu")
    return device


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX-512 BF16 or AMX).

    Where it does, bf16 convolutions run at about twice the fp32 rate through oneDNN; where it
    does not, PyTorch emulates bf16 and it is slower than fp32. PyTorch exposes the check only
    under private names, so a build without them counts as "no"."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@functools.lru_cache(maxsize=256)
def device_ints(values: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`values` as a [N] tensor on `device`, uploaded once per distinct tuple and cached.

    Per-frame bookkeeping (slot multiplicities, active slots, object ids) repeats from frame to
    frame; a plain `torch.tensor(list, device=cuda)` copies from pageable memory, so the host
    waits for the GPU's queue every frame. On CUDA the first upload is pinned and asynchronous.
    Callers must not modify the tensor (it is shared)."""
    host = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)
