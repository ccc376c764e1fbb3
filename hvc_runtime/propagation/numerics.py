"""Matrix products whose rounding matches across devices."""

from __future__ import annotations

import torch


def half_aware_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in a's dtype. CPUs lack fast half GEMMs: there, accumulate in fp32 and round the
    result, which is what GPU half GEMMs (fp32 accumulation) compute, at fp32 speed."""
    if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
        return (a.float() @ b.float()).to(a.dtype)
    return a @ b
