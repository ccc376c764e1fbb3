"""Which encoder runs, and on what: a checkpoint on PyTorch, or an exported artifact on the
runtime its manifest names. The rules live here once, for the Python API and the commands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hvc_runtime.encoder.artifacts import manifest_path
from hvc_runtime.encoder.backends import TORCH_BACKENDS, EncoderBackend, check_backend, load_backend
from hvc_runtime.encoder.backends.torch_module import TorchBackend
from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.encoder.formats import FORMATS
from hvc_runtime.encoder.hub import Weights
from hvc_runtime.utils.errors import HvcError, OptionError


@dataclass(frozen=True)
class LoadedBackend:
    """An encoder ready to run and what it is (one line); untrusted ones deserve a warning
    (untrained weights, or an artifact that failed its export parity check: `caveat`).
    `weights` are the files a checkpoint's weights were read from, by role."""

    encoder: EncoderBackend
    description: str
    trusted: bool = True
    caveat: str = ""
    weights: Mapping[str, Weights] = field(default_factory=dict)


def is_artifact(checkpoint: str | Path | None) -> bool:
    """An exported artifact is recognised by the manifest hvc-export writes beside it."""
    return checkpoint is not None and manifest_path(Path(checkpoint)).is_file()


def load_encoder_backend(
    checkpoint: str | Path | None,
    device: torch.device,
    *,
    precision: str = "fp32",
    backend: str = "auto",
    moco: str | Path | None = None,
    official_bn_drift: bool = False,
) -> LoadedBackend:
    """The encoder for `checkpoint` (None: the default; a path, a published model name or a
    URL) on `device`.

    A checkpoint runs on PyTorch (`backend` torch or torch-compile); an artifact runs on the
    runtime its manifest names, which `backend` may only confirm."""
    check_backend(backend)
    if is_artifact(checkpoint):
        return _artifact(Path(checkpoint), device, backend, moco, official_bn_drift)
    if backend not in ("auto", *TORCH_BACKENDS):
        raise OptionError(
            "backend", backend, "runs an exported encoder: export one with hvc-export first"
        )
    loaded = load_encoder(checkpoint, moco=moco, official_bn_drift=official_bn_drift)
    compiled, graphs = backend == "torch-compile", backend == "torch-cudagraphs"
    return LoadedBackend(
        TorchBackend(loaded.encoder, device, precision, compile=compiled, cuda_graphs=graphs),
        loaded.description
        + {"torch-compile": " (torch.compile)", "torch-cudagraphs": " (CUDA graphs)"}.get(
            backend, ""
        ),
        trusted=loaded.trained,
        weights=loaded.weights,
    )


def _artifact(
    artifact: Path, device: torch.device, backend: str, moco: str | Path | None, drift: bool
) -> LoadedBackend:
    if moco is not None:
        raise OptionError(
            "moco", moco, f"{artifact} is an exported artifact; its features are fixed"
        )
    if drift:
        raise OptionError(
            "official_bn_drift", drift, f"{artifact} is an exported artifact; its weights are fixed"
        )
    encoder, manifest = load_backend(artifact, device)
    runtime = FORMATS[manifest.format].runtime
    if backend not in ("auto", runtime):
        raise HvcError(f"{artifact}: a {manifest.format} artifact runs on {runtime}, not {backend}")
    return LoadedBackend(
        encoder,
        f"{manifest.format} {manifest.precision} artifact {artifact} on {runtime}",
        trusted=bool(manifest.parity.get("passed")),
        caveat="" if manifest.parity.get("passed") else "parity failed",
    )
