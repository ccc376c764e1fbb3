"""TorchScript artifacts, loaded with plain `torch.jit.load`."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from hvc_runtime.encoder.artifacts import Manifest, contradiction
from hvc_runtime.utils.errors import HvcError


@contextmanager
def quiet_jit() -> Iterator[None]:
    """torch.jit now warns on every call that it is deprecated: the format still works, and a
    user exporting or loading a TorchScript artifact has nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        yield


class TorchScriptBackend:
    def __init__(self, artifact: Path, manifest: Manifest, device: torch.device) -> None:
        try:
            with quiet_jit():
                self.module = torch.jit.load(str(artifact), map_location=device).eval()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise HvcError(f"{artifact}: not a loadable TorchScript file ({first})") from exc
        weights = {str(p.dtype).removeprefix("torch.") for p in self.module.parameters()}
        precision = "float16" if manifest.precision == "fp16" else "float32"
        if weights != {precision}:
            raise contradiction(
                artifact, f"precision {manifest.precision}", f"holds {', '.join(weights)} weights"
            )
        self.feature_dim = manifest.feature_dim
        self.device = device

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.module(frames.to(self.device, torch.float32))
