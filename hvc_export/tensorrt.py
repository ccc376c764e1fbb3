"""TensorRT engines from the exported ONNX, with the official TensorRT 10/11 Python API.

A strongly typed network (fp16 comes from the fp16 ONNX; TensorRT 11 has no fp16 builder flag),
one optimisation profile from the shape range, a workspace limit, a persistent timing cache, and
optionally version-compatible engines that the lean runtime can run. This path cannot be run
where the TensorRT builder is not installable (see docs/export.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hvc_export.graph import ExportGraph, ShapeRange
from hvc_export.onnx import INPUT, export_onnx
from hvc_export.request import ExportRequest
from hvc_runtime.utils.errors import HvcError
from hvc_runtime.utils.optional import require

INSTALL_HINT = (
    "TensorRT is not installed: install the 'trt' extra (pip install 'hvc[trt]') on a machine "
    "with an NVIDIA GPU and the TensorRT builder libraries"
)


def check_tensorrt_request(request: ExportRequest) -> None:
    """What can be refused before any work: no TensorRT, or shapes an engine cannot take."""
    require("tensorrt", INSTALL_HINT)
    request.shapes.require_multiple_of_8()


def export_tensorrt(graph: ExportGraph, request: ExportRequest, path: Path) -> dict:
    """ONNX first (a temporary file beside the engine), then the engine built from it; returns
    the manifest's TensorRT version and the GPU the engine is bound to."""
    onnx_path = path.with_name(f"{path.name}.onnx")
    try:
        export_onnx(graph, request, onnx_path)
        version = build_engine(
            onnx_path,
            path,
            request.shapes,
            request.max_batch,
            request.workspace_bytes,
            request.timing_cache,
            request.version_compatible,
        )
    finally:
        onnx_path.unlink(missing_ok=True)
    device = torch.device("cuda")
    return {
        "versions": {"tensorrt": version},
        "device": {
            "name": torch.cuda.get_device_name(device),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "version_compatible": request.version_compatible,
        },
    }


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    shapes: ShapeRange,
    max_batch: int,
    workspace_bytes: int,
    timing_cache: Path | None,
    version_compatible: bool,
) -> str:
    """Build and serialise an engine; returns the TensorRT version used."""
    trt = require("tensorrt", INSTALL_HINT)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise HvcError(f"{onnx_path}: TensorRT cannot parse it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        INPUT,
        (1, 3, *shapes.min),
        (1, 3, *shapes.opt),
        (max_batch, 3, *shapes.max),
    )
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise HvcError(f"{onnx_path}: TensorRT failed to build an engine (see the log above)")
    engine_path.write_bytes(bytes(serialized))
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return trt.__version__
