"""The one table of export formats: what each is called, its file suffix, which runtime runs it.

Export (`hvc_export`), artifact loading (`hvc_runtime.encoder.backends.load_backend`) and the command
lines all read this table; adding a format means adding a row here and its exporter there.
Runtimes are named as import paths and imported only when used: their packages are optional.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from hvc_runtime.utils.errors import OptionError


@dataclass(frozen=True)
class FormatSpec:
    name: str  # what `hvc-export --format` takes and the manifest records
    suffix: str  # the default file suffix of an artifact
    runtime: str  # the `--backend` name of the runtime that runs it
    needs_cuda: bool  # only builds and runs on an NVIDIA GPU
    backend_class: str  # "module:Class" of the runtime's EncoderBackend
    description: str

    def load_backend_class(self) -> type:
        module, _, name = self.backend_class.partition(":")
        return getattr(importlib.import_module(module), name)


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "torchscript",
            ".pt",
            "torchscript",
            False,
            "hvc_runtime.encoder.backends.torchscript:TorchScriptBackend",
            "traced TorchScript, loads with plain torch.jit.load",
        ),
        FormatSpec(
            "onnx",
            ".onnx",
            "onnxruntime",
            False,
            "hvc_runtime.encoder.backends.onnxruntime:OnnxRuntimeBackend",
            "ONNX opset 18, run by ONNX Runtime (CPU or CUDA)",
        ),
        FormatSpec(
            "trt",
            ".engine",
            "tensorrt",
            True,
            "hvc_runtime.encoder.backends.tensorrt:TensorRTBackend",
            "TensorRT engine built from the ONNX graph for one GPU",
        ),
    )
}
ARTIFACT_SUFFIXES = frozenset(spec.suffix for spec in FORMATS.values())


def format_spec(name: str) -> FormatSpec:
    try:
        return FORMATS[name]
    except KeyError:
        raise OptionError("format", name, f"choose one of {', '.join(FORMATS)}") from None
