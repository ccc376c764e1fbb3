"""Encoder variants to time: PyTorch eager/compiled, TorchScript, ONNX Runtime, TensorRT.

Each variant is a callable on float32 NCHW frames; variants that cannot run here are returned
with the reason, so the report lists them as skipped instead of silently leaving them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

Encode = Callable[[torch.Tensor], torch.Tensor]
ALL = (
    "torch-eager-fp32",
    "torch-eager-half-cl",
    "torch-cudagraphs-half-cl",
    "torch-compile",
    "torch-compile-cudagraphs",
    "torchscript",
    "onnxruntime-cpu",
    "onnxruntime-cuda",
    "tensorrt",
)
BASELINE = "torch-eager-fp32"


@dataclass
class Variant:
    name: str
    encode: Encode | None = None
    skipped: str | None = None


def export_and_load(fmt: str, folder: Path, backend_device: torch.device) -> Encode:
    """Export the encoder once per format into `folder`, load it back on `backend_device`."""
    from hvc_export import ExportRequest, export
    from hvc_runtime.encoder.backends import load_backend
    from hvc_runtime.encoder.formats import FORMATS

    path = folder / f"encoder{FORMATS[fmt].suffix}"
    if not path.exists():
        export(ExportRequest(None, fmt, path))
    backend, _ = load_backend(path, backend_device)
    return backend


def build_variants(names: list[str], device: torch.device, folder: Path) -> list[Variant]:
    """Instantiate the requested variants on `device`, or say why one cannot run."""
    from hvc_runtime.encoder.backends.torch_module import TorchBackend
    from hvc_runtime.encoder.checkpoints import random_encoder

    variants = []
    cuda = device.type == "cuda"
    for name in names:
        encoder = random_encoder().to(device)
        try:
            if name == "torch-eager-fp32":
                variants.append(Variant(name, encoder))
            elif name == "torch-eager-half-cl":
                half = "fp16" if cuda else "bf16"
                variants.append(
                    Variant(f"torch-eager-{half}-cl", TorchBackend(encoder, device, half))
                )
            elif name == "torch-cudagraphs-half-cl":
                if not cuda:
                    variants.append(Variant(name, skipped="CUDA graphs need a CUDA device"))
                else:
                    graphs = TorchBackend(encoder, device, "fp16", cuda_graphs=True)
                    variants.append(Variant("torch-cudagraphs-fp16-cl", graphs))
            elif name == "torch-compile":
                variants.append(Variant(name, TorchBackend(encoder, device, compile=True)))
            elif name == "torch-compile-cudagraphs":
                if not cuda:
                    variants.append(Variant(name, skipped="CUDA graphs need a CUDA device"))
                else:  # max-autotune spends minutes tuning convolutions: not in a short slot
                    variants.append(Variant(name, torch.compile(encoder, mode="reduce-overhead")))
            elif name == "torchscript":
                variants.append(Variant(name, export_and_load("torchscript", folder, device)))
            elif name == "onnxruntime-cpu":
                cpu_backend = export_and_load("onnx", folder, torch.device("cpu"))
                variants.append(Variant(name, lambda x, b=cpu_backend: b(x.cpu()).to(device)))
            elif name == "onnxruntime-cuda":
                if not cuda:
                    variants.append(Variant(name, skipped="no CUDA device"))
                else:
                    variants.append(Variant(name, export_and_load("onnx", folder, device)))
            elif name == "tensorrt":
                variants.append(Variant(name, export_and_load("trt", folder, device)))
            else:
                variants.append(
                    Variant(name, skipped=f"unknown backend (choose from {', '.join(ALL)})")
                )
        except Exception as exc:  # a backend that is not installed or cannot run here
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            variants.append(Variant(name, skipped=reason))
    return variants
