"""TorchScript artifacts, loaded with plain `torch.jit.load`."""

from __future__ import annotations

from pathlib import Path

import torch

from hvc_runtime.artifacts import Manifest
from hvc_runtime.errors import HvcError


class TorchScriptBackend:
    def __init__(self, artifact: Path, manifest: Manifest, device: torch.device) -> None:
        try:
            self.module = torch.jit.load(str(artifact), map_location=device).eval()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise HvcError(f"{artifact}: not a loadable TorchScript file ({first})") from exc
        self.feature_dim = manifest.feature_dim
        self.device = device

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.module(frames.to(self.device, torch.float32))
