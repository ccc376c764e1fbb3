"""Checkpoint → verified artifact + manifest. Nothing is left under the final name unless the
artifact loaded back and passed its parity check (or `force` was asked, which records the failure).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hvc_export.graph import ExportGraph, ShapeRange
from hvc_export.onnx import export_onnx
from hvc_export.parity import ParityReport, check_parity
from hvc_export.tensorrt import INSTALL_HINT, build_engine
from hvc_export.torchscript import export_torchscript
from hvc_runtime.artifacts import FORMATS, Manifest, manifest_path
from hvc_runtime.atomic import atomic_path
from hvc_runtime.backends.onnxruntime import OnnxRuntimeBackend
from hvc_runtime.backends.tensorrt import TensorRTBackend
from hvc_runtime.backends.torchscript import TorchScriptBackend
from hvc_runtime.checkpoints import load_encoder
from hvc_runtime.errors import HvcError
from hvc_runtime.optional import require
from hvc_runtime.provenance import library_versions


@dataclass
class ExportRequest:
    checkpoint: Path | None
    format: str
    out: Path
    precision: str = "fp32"
    moco: Path | None = None
    shapes: ShapeRange = field(default_factory=ShapeRange)
    max_batch: int = 8
    parity_frames: list[np.ndarray] | None = None
    force: bool = False
    workspace_bytes: int = 4 << 30
    timing_cache: Path | None = None
    version_compatible: bool = False


@dataclass
class ExportResult:
    artifact: Path
    manifest: Manifest
    report: ParityReport


def _sha256(path: Path | None) -> str:
    if path is None:
        return "none (seeded random initialisation)"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_destination(out: Path, fmt: str) -> None:
    if fmt not in FORMATS:
        raise HvcError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise HvcError(f"{out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise HvcError(f"{out}: folder {out.parent} is not writable")


def parity_sizes(shapes: ShapeRange) -> list[tuple[int, int]]:
    """Two sizes inside the range: a multiple of 8 and one that is not."""

    def clamp(size: tuple[int, int]) -> tuple[int, int]:
        return (
            min(max(size[0], shapes.min[0]), shapes.max[0]),
            min(max(size[1], shapes.min[1]), shapes.max[1]),
        )

    return list(dict.fromkeys([clamp((240, 432)), clamp((181, 323))]))


def export(request: ExportRequest) -> ExportResult:
    out = Path(request.out)
    _check_destination(out, request.format)
    device = torch.device("cpu")
    if request.format == "trt":
        require("tensorrt", INSTALL_HINT)
        request.shapes.require_multiple_of_8()
        if not torch.cuda.is_available():
            raise HvcError(
                "--format trt: TensorRT engines need an NVIDIA GPU, none is visible here"
            )
        device = torch.device("cuda")
    loaded = load_encoder(request.checkpoint, request.moco)
    graph = ExportGraph(loaded.encoder, request.precision)
    manifest = Manifest(
        format=request.format,
        precision=request.precision,
        feature_dim=loaded.encoder.feature_dim,
        shape_range=request.shapes.as_dict(),
        batch_range=[1, request.max_batch],
        source_sha256=_sha256(request.checkpoint),
        versions=library_versions(),
        parity={},
        output={
            "name": "features",
            "dtype": "float16" if request.precision == "fp16" else "float32",
        },
        normalization={
            "mean": list(loaded.encoder.normalization.mean),
            "std": list(loaded.encoder.normalization.std),
        },
    )
    staging = out.with_name(f".{out.name}.partial")
    onnx_staging = out.with_name(f".{out.name}.partial.onnx")
    try:
        if request.format == "torchscript":
            export_torchscript(graph, torch.rand(1, 3, *request.shapes.opt), staging)
            backend = TorchScriptBackend(staging, manifest, device)
        elif request.format == "onnx":
            export_onnx(graph, request.shapes, request.max_batch, staging)
            backend = OnnxRuntimeBackend(staging, manifest, device)
        else:
            export_onnx(graph, request.shapes, request.max_batch, onnx_staging)
            manifest.versions["tensorrt"] = build_engine(
                onnx_staging,
                staging,
                request.shapes,
                request.max_batch,
                request.workspace_bytes,
                request.timing_cache,
                request.version_compatible,
            )
            manifest.device = {
                "name": torch.cuda.get_device_name(device),
                "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
                "version_compatible": request.version_compatible,
            }
            backend = TensorRTBackend(staging, manifest, device)
        report = check_parity(
            loaded.encoder,
            backend,
            request.precision,
            parity_sizes(request.shapes),
            request.parity_frames,
        )
        manifest.parity = report.as_dict()
        if not report.passed and not request.force:
            raise HvcError(
                f"{out}: parity check failed ({report.summary()}); nothing written (--force writes it anyway)"
            )
        with atomic_path(manifest_path(out)) as tmp:
            tmp.write_text(manifest.to_json())
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
        onnx_staging.unlink(missing_ok=True)
    return ExportResult(out, manifest, report)
