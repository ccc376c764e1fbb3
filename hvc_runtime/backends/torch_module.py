"""A PyTorch encoder module as a backend: eager or `torch.compile`d, half precision channels-last."""

from __future__ import annotations

import torch

from hvc_runtime.encoders import InferenceEncoder
from hvc_runtime.precision import DTYPES


class TorchBackend:
    """Runs an `InferenceEncoder` on `device` (the module is moved there, in place).

    In fp16/bf16 the convolutions run under autocast on channels-last tensors, the layout
    tensor cores and oneDNN prefer; `compile=True` wraps the module in `torch.compile`
    (compiled on the first frame, recompiled only when the frame size changes).
    """

    def __init__(
        self,
        encoder: InferenceEncoder,
        device: torch.device,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = DTYPES[precision]
        self.channels_last = self.dtype != torch.float32
        module = encoder.to(self.device).eval()
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.feature_dim = encoder.feature_dim
        self._run = torch.compile(module, dynamic=False) if compile else module

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(self.device)
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.channels_last):
            return self._run(frames)
