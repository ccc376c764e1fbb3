"""TensorRT engines, run with `execute_async_v3` on PyTorch's current CUDA stream."""

from __future__ import annotations

from pathlib import Path

import torch

from hvc_runtime.encoder.artifacts import Manifest
from hvc_runtime.utils.errors import HvcError
from hvc_runtime.utils.optional import require


class TensorRTBackend:
    def __init__(self, artifact: Path, manifest: Manifest, device: torch.device) -> None:
        trt = require("tensorrt", f"{artifact}: TensorRT is not installed (pip install 'hvc[trt]')")
        if device.type != "cuda":
            raise HvcError(f"{artifact}: TensorRT engines run on CUDA devices only, not {device}")
        built_for = manifest.device.get("compute_capability")
        here = ".".join(map(str, torch.cuda.get_device_capability(device)))
        if built_for and built_for != here and not manifest.device.get("version_compatible"):
            raise HvcError(
                f"{artifact}: engine built for compute capability {built_for} "
                f"({manifest.device.get('name')}), this GPU is {here}; rebuild it with hvc-export"
            )
        built_with = manifest.versions.get("tensorrt")
        if (
            built_with
            and built_with != trt.__version__
            and not manifest.device.get("version_compatible")
        ):
            raise HvcError(
                f"{artifact}: engine built with TensorRT {built_with}, this is {trt.__version__}; "
                "rebuild it, or export a version-compatible engine"
            )
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        runtime.engine_host_code_allowed = bool(manifest.device.get("version_compatible"))
        self.engine = runtime.deserialize_cuda_engine(artifact.read_bytes())
        if self.engine is None:
            raise HvcError(f"{artifact}: TensorRT could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = (
            self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)
        )
        self.out_dtype = torch.float16 if manifest.precision == "fp16" else torch.float32
        self.feature_dim = manifest.feature_dim
        self.device = device

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(self.device, torch.float32).contiguous()
        batch, _, height, width = frames.shape
        out = torch.empty(
            (batch, self.feature_dim, -(-height // 8), -(-width // 8)),
            dtype=self.out_dtype,
            device=self.device,
        )
        self.context.set_input_shape(self.input_name, tuple(frames.shape))
        self.context.set_tensor_address(self.input_name, frames.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise HvcError("TensorRT execution failed")
        return out
