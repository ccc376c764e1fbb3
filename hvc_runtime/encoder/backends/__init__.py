"""Encoder runtimes behind one protocol: float32 NCHW RGB in [0, 1] → stride-8 features.

`load_backend` reads an artifact's manifest, checks it fits this machine, and returns a callable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from hvc_runtime.encoder.artifacts import Manifest, check_file_format, read_manifest
from hvc_runtime.encoder.formats import FORMATS
from hvc_runtime.utils.errors import HvcError, OptionError

# backend names: PyTorch runs a checkpoint; the others run an exported artifact
TORCH_BACKENDS = ("torch", "torch-compile", "torch-cudagraphs")
BACKENDS = ("auto", *TORCH_BACKENDS, *(spec.runtime for spec in FORMATS.values()))


class EncoderBackend(Protocol):
    feature_dim: int

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise OptionError("backend", name, f"choose one of {', '.join(BACKENDS)}")
    return name


def load_backend(artifact: Path, device: torch.device | str) -> tuple[EncoderBackend, Manifest]:
    """The runtime for an exported encoder, chosen by its manifest."""
    artifact, device = Path(artifact), torch.device(device)
    if not artifact.exists():
        raise HvcError(f"{artifact}: artifact not found")
    manifest = read_manifest(artifact)
    check_file_format(artifact, manifest)
    backend = FORMATS[manifest.format].load_backend_class()
    return backend(artifact, manifest, device), manifest
