"""A PyTorch encoder module as a backend: eager, `torch.compile`d or replayed from CUDA graphs,
in half precision channels-last when asked."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hvc_runtime.encoder.network import InferenceEncoder
from hvc_runtime.encoder.precision import DTYPES
from hvc_runtime.utils.errors import OptionError

GRAPH_WARMUP = 3  # eager calls on a side stream before capture (cuDNN picks its algorithms)
_CAST_BY_AUTOCAST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # its lower-precision ops


class TorchBackend:
    """Runs an `InferenceEncoder` on `device` (the module is moved there, in place).

    In fp16/bf16 the convolutions run under autocast on channels-last tensors, the layout
    tensor cores and oneDNN prefer, and the weights of the layers autocast runs in half
    precision (convolutions, linear) are cast once, on a copy of the module: autocast would
    cast them again at every call, and inside a CUDA graph at every replay (its cache is off
    during capture). The results are the same: autocast casts those weights to the same dtype
    and leaves tensors already in it alone; normalisation layers keep their fp32 parameters.
    `compile=True` wraps the module in `torch.compile`
    (compiled on the first frame, recompiled only when the frame size changes);
    `cuda_graphs=True` captures one CUDA graph per frame shape and replays it, so a frame
    costs one launch instead of one per layer (the encoder at batch 1 is launch-bound).
    """

    def __init__(
        self,
        encoder: InferenceEncoder,
        device: torch.device,
        precision: str = "fp32",
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        self.device = torch.device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise OptionError("backend", "torch-cudagraphs", "CUDA graphs need a CUDA device")
        self.dtype = DTYPES[precision]
        self.channels_last = self.dtype != torch.float32
        module = encoder.to(self.device).eval()
        if self.channels_last:
            module = _cast_autocast_weights(copy.deepcopy(module), self.dtype)
            module = module.to(memory_format=torch.channels_last)
        self.feature_dim = encoder.feature_dim
        self._run = torch.compile(module, dynamic=False) if compile else module
        self._graphs: dict[tuple[int, ...], _Graph] | None = {} if cuda_graphs else None

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(self.device)
        if self._graphs is None:
            return self._forward(frames)
        graph = self._graphs.get(tuple(frames.shape))
        if graph is None:
            graph = self._graphs[tuple(frames.shape)] = _Graph(self._forward, frames)
        return graph.replay(frames)

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.channels_last):
            return self._run(frames)


def _cast_autocast_weights(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`module` with the parameters of the layers autocast runs in `dtype` cast to it."""
    for layer in module.modules():
        if isinstance(layer, _CAST_BY_AUTOCAST):
            layer.to(dtype)
    return module


class _Graph:
    """One captured forward pass: inputs are copied into its static buffer, the output is
    copied out (the next replay overwrites the static one, and callers keep features)."""

    def __init__(self, forward, example: torch.Tensor) -> None:
        device = example.device
        self.device = device
        self.input = example.clone()
        with torch.cuda.device(device):  # capture on this GPU's streams, not the current one's
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP):
                    forward(self.input)
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            # thread-local: the frame reader keeps pinning host memory on its own thread
            with torch.cuda.graph(
                self.graph, stream=torch.cuda.Stream(device), capture_error_mode="thread_local"
            ):
                self.output = forward(self.input)

    def replay(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self.device):
            self.input.copy_(frames)
            self.graph.replay()
            return self.output.clone()
