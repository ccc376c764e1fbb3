"""Turning a device name ("auto", "cpu", "cuda:1", "mps") into a usable torch device."""

from __future__ import annotations

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
