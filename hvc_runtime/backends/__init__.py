"""Encoder runtimes behind one protocol: float32 NCHW RGB in [0, 1] → stride-8 features.

`load_backend` reads an artifact's manifest, checks it fits this machine, and returns a callable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from hvc_runtime.artifacts import Manifest, read_manifest
from hvc_runtime.errors import HvcError

# `hvc-run --backend` names: PyTorch runs a checkpoint; the others run an exported artifact
TORCH_BACKENDS = ("torch", "torch-compile")
ARTIFACT_BACKENDS = {"torchscript": "torchscript", "onnx": "onnxruntime", "trt": "tensorrt"}
BACKENDS = ("auto", *TORCH_BACKENDS, *ARTIFACT_BACKENDS.values())


class EncoderBackend(Protocol):
    feature_dim: int

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


def load_backend(artifact: Path, device: torch.device | str) -> tuple[EncoderBackend, Manifest]:
    """The runtime for an exported encoder, chosen by its manifest."""
    artifact, device = Path(artifact), torch.device(device)
    if not artifact.exists():
        raise HvcError(f"{artifact}: artifact not found")
    manifest = read_manifest(artifact)
    if manifest.format == "torchscript":
        from hvc_runtime.backends.torchscript import TorchScriptBackend

        return TorchScriptBackend(artifact, manifest, device), manifest
    if manifest.format == "onnx":
        from hvc_runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(artifact, manifest, device), manifest
    from hvc_runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(artifact, manifest, device), manifest
