"""A PyTorch encoder module as a backend: eager, `torch.compile`d or replayed from CUDA graphs,
in half precision channels-last when asked."""

from __future__ import annotations

import torch

from hvc_runtime.encoder.network import InferenceEncoder
from hvc_runtime.encoder.precision import DTYPES
from hvc_runtime.utils.errors import OptionError

GRAPH_WARMUP = 3  # eager calls on a side stream before capture (cuDNN picks its algorithms)


class TorchBackend:
    """Runs an `InferenceEncoder` on `device` (the module is moved there, in place).

    In fp16/bf16 the convolutions run under autocast on channels-last tensors, the layout
    tensor cores and oneDNN prefer; `compile=True` wraps the module in `torch.compile`
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
