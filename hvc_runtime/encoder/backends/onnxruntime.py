"""ONNX Runtime sessions: the CPU provider, or CUDA with I/O bound to torch tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hvc_runtime.encoder.artifacts import INPUT_CONTRACT, Manifest, contradiction
from hvc_runtime.utils.errors import HvcError
from hvc_runtime.utils.optional import require

_ONNX_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)"}


def _check_signature(artifact: Path, manifest: Manifest, session) -> None:
    """The model's own inputs and outputs against what its manifest promises."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    signature = [(i.name, i.type) for i in inputs], [(o.name, o.type) for o in outputs]
    precision = "float16" if manifest.precision == "fp16" else "float32"
    promised = (
        [(INPUT_CONTRACT["name"], _ONNX_TYPES[INPUT_CONTRACT["dtype"]])],
        [("features", _ONNX_TYPES[precision])],
    )
    if signature != promised:
        raise contradiction(
            artifact,
            f"precision {manifest.precision}: input {promised[0]}, output {promised[1]}",
            f"has input {signature[0]}, output {signature[1]}",
        )
    channels = outputs[0].shape[1] if len(outputs[0].shape) == 4 else None
    if isinstance(channels, int) and channels != manifest.feature_dim:
        raise contradiction(
            artifact, f"{manifest.feature_dim}-d features", f"returns {channels}-d features"
        )


class OnnxRuntimeBackend:
    def __init__(self, artifact: Path, manifest: Manifest, device: torch.device) -> None:
        ort = require(
            "onnxruntime", f"{artifact}: onnxruntime is not installed (pip install 'hvc[onnx]')"
        )
        available = ort.get_available_providers()
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise HvcError(
                    f"{artifact}: onnxruntime has no CUDA provider here; install 'hvc[gpu]' "
                    "(onnxruntime-gpu), or run on the CPU"
                )
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
        elif device.type == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise HvcError(
                f"{artifact}: ONNX Runtime backend runs on cpu or cuda, not {device.type}"
            )
        try:
            self.session = ort.InferenceSession(str(artifact), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise HvcError(f"{artifact}: ONNX Runtime cannot load it ({exc})") from exc
        _check_signature(artifact, manifest, self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.feature_dim = manifest.feature_dim
        self.device = device

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(self.device, torch.float32).contiguous()
        if self.device.type == "cpu":
            out = self.session.run([self.output_name], {self.input_name: frames.numpy()})[0]
            return torch.from_numpy(out)
        return self._run_bound(frames)

    def _run_bound(self, frames: torch.Tensor) -> torch.Tensor:
        """CUDA: bind torch memory as input and output, so nothing crosses to the host."""
        import onnxruntime as ort

        height, width = frames.shape[-2:]
        out_dtype = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16}[
            self.session.get_outputs()[0].type
        ]
        out = torch.empty(
            (frames.shape[0], self.feature_dim, -(-height // 8), -(-width // 8)),
            dtype=out_dtype,
            device=self.device,
        )
        binding = self.session.io_binding()
        index = self.device.index or 0
        binding.bind_input(
            self.input_name, "cuda", index, np.float32, tuple(frames.shape), frames.data_ptr()
        )
        binding.bind_output(
            self.output_name,
            "cuda",
            index,
            np.float16 if out_dtype == torch.float16 else np.float32,
            tuple(out.shape),
            out.data_ptr(),
        )
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding, ort.RunOptions())
        return out
