"""Matrix products whose rounding matches across devices, and the dtype scores are ranked in."""

from __future__ import annotations

import functools

import torch

from hvc_runtime.utils.devices import cpu_has_native_bf16


def half_aware_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in a's dtype. Most CPUs lack fast half GEMMs: there, accumulate in fp32 and round
    the result, which is what GPU half GEMMs (fp32 accumulation) compute, at fp32 speed. A CPU
    with bf16 instructions computes bf16 products that way itself (oneDNN), at twice the rate."""
    if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
        if a.dtype == torch.bfloat16 and cpu_has_native_bf16():
            return a @ b
        return (a.float() @ b.float()).to(a.dtype)
    return a @ b


def score_matmul(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """a @ b accumulated in fp32 and returned in `dtype`: float32 keeps the sums as they are
    (fp32 ranking of half features); a half dtype rounds them as a half GEMM does."""
    if dtype == torch.float32 and a.dtype != torch.float32:
        return a.float() @ b.float()
    return half_aware_matmul(a, b)


def fast_score_matmul(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`score_matmul` for 2-D operands, faster on CPUs: fp32 products go through oneDNN's fp32
    GEMM (IEEE fp32, no reduced-precision shortcut), which uses AVX-512 where the BLAS behind
    `@` may not (on an AMD EPYC, about a quarter faster on the fast mode's key rows). Other
    devices, dtypes and tensors that need gradients: `score_matmul` itself."""
    fp32 = a.dtype == b.dtype == dtype == torch.float32
    graph = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if a.device.type == "cpu" and fp32 and not graph and onednn_fp32_linear_works():
        return _onednn_linear(a.contiguous(), b.T.contiguous())
    return score_matmul(a, b, dtype)


def _onednn_linear(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(rows, weight, None, "none", [], "")


@functools.cache
def onednn_fp32_linear_works() -> bool:
    """Whether this PyTorch has oneDNN's linear operator (an internal one, used by
    torch.compile on CPUs) and it computes fp32 products as `@` does, checked once."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    rows, weight = (torch.randn(shape, generator=generator) for shape in ((67, 40), (9, 40)))
    try:
        result = _onednn_linear(rows, weight)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return result.dtype == torch.float32 and torch.allclose(result, rows @ weight.T, atol=1e-4)
