"""Matrix products whose rounding matches across devices, and the dtype scores are ranked in."""

from __future__ import annotations

import torch


def half_aware_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in a's dtype. CPUs lack fast half GEMMs: there, accumulate in fp32 and round the
    result, which is what GPU half GEMMs (fp32 accumulation) compute, at fp32 speed."""
    if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
        return (a.float() @ b.float()).to(a.dtype)
    return a @ b


def score_matmul(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """a @ b accumulated in fp32 and returned in `dtype`: float32 keeps the sums as they are
    (fp32 ranking of half features); a half dtype rounds them as a half GEMM does."""
    if dtype == torch.float32 and a.dtype != torch.float32:
        return a.float() @ b.float()
    return half_aware_matmul(a, b)
