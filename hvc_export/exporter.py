"""Checkpoint → verified artifact + manifest. Nothing is left under the final name unless the
artifact loaded back and passed its parity check (or `force` was asked, which records the failure).

One exporter per format (`EXPORTERS`), keyed like the runtime's format table
(`hvc_runtime.encoder.formats.FORMATS`), which also names the runtime that loads the artifact back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hvc_export.graph import ExportGraph, ShapeRange
from hvc_export.onnx import export_onnx
from hvc_export.parity import ParityReport, check_parity
from hvc_export.request import ExportRequest
from hvc_export.tensorrt import check_tensorrt_request, export_tensorrt
from hvc_export.torchscript import export_torchscript
from hvc_runtime.encoder.artifacts import Manifest, manifest_path
from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.encoder.formats import FORMATS, format_spec
from hvc_runtime.encoder.precision import EXPORT_PRECISIONS, dtype_of
from hvc_runtime.encoder.published import remote_weights
from hvc_runtime.encoder.weights_cache import file_digests
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError, OptionError
from hvc_runtime.utils.locks import FolderLock
from hvc_runtime.utils.provenance import library_versions

# each writes the artifact to a path and returns what it adds to the manifest
Exporter = Callable[[ExportGraph, ExportRequest, Path], dict]
EXPORTERS: dict[str, Exporter] = {
    "torchscript": export_torchscript,
    "onnx": export_onnx,
    "trt": export_tensorrt,
}
CHECKS: dict[str, Callable[[ExportRequest], None]] = {"trt": check_tensorrt_request}
assert EXPORTERS.keys() == FORMATS.keys(), "every format in the table needs an exporter"


@dataclass
class ExportResult:
    artifact: Path
    manifest: Manifest
    report: ParityReport


def default_artifact_path(checkpoint: str | Path | None, fmt: str, precision: str) -> Path:
    """`<checkpoint stem>-<precision><suffix>` beside the checkpoint, in the working folder for
    a model name or a URL (never in the weights cache), or `hvc-encoder-...`."""
    remote = remote_weights(checkpoint, "checkpoint") if checkpoint is not None else None
    if remote is not None:
        stem = Path(remote.stem)
    else:
        stem = Path(checkpoint).with_suffix("") if checkpoint else Path("hvc-encoder")
    return Path(f"{stem}-{precision}{format_spec(fmt).suffix}")


def _sha256(path: Path | None) -> str:
    if path is None:
        return "none (seeded random initialisation)"
    return file_digests(path)["sha256"]


def _same_file(a: Path, b: str | Path | None) -> bool:
    return b is not None and a.exists() and Path(b).exists() and os.path.samefile(a, b)


def _check_destination(request: ExportRequest) -> None:
    """Refuse a name that says another format, and to write over the source (ever) or over an
    existing artifact (unless asked)."""
    out = Path(request.out)
    if out.parent.is_dir() and not os.access(out.parent, os.W_OK):
        raise HvcError(f"{out}: folder {out.parent} is not writable")
    for target in (out, manifest_path(out)):
        for source in (request.checkpoint, request.moco):
            if _same_file(target, source):
                raise HvcError(f"{target}: is the source checkpoint; choose another output path")
        if target.exists() and not request.overwrite:
            raise HvcError(f"{target}: already exists", remedy="overwrite")
    suffix = format_spec(request.format).suffix
    if out.suffix != suffix:
        raise HvcError(
            f"{out}: a {request.format} artifact is named *{suffix} (the name is how people and "
            f"hvc-run tell formats apart); use --out {out.with_suffix(suffix)}"
        )


def export(request: ExportRequest) -> ExportResult:
    out = Path(request.out)
    spec = format_spec(request.format)
    dtype_of(request.precision, EXPORT_PRECISIONS)
    _check_destination(request)
    if request.format in CHECKS:
        CHECKS[request.format](request)
    device = torch.device("cuda" if spec.needs_cuda else "cpu")
    if spec.needs_cuda and not torch.cuda.is_available():
        raise OptionError("format", spec.name, "needs an NVIDIA GPU, none is visible here")
    loaded = load_encoder(request.checkpoint, moco=request.moco)
    graph = ExportGraph(loaded.encoder, request.precision)
    manifest = Manifest(
        format=spec.name,
        precision=request.precision,
        feature_dim=loaded.encoder.feature_dim,
        shape_range=request.shapes.as_dict(),
        batch_range=[1, request.max_batch],
        source_sha256=_sha256(
            loaded.weights["checkpoint"].path if "checkpoint" in loaded.weights else None
        ),
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
        weights={role: given.record() for role, given in loaded.weights.items()},
    )
    made = _make_folders(out.parent)
    staging = out.with_name(f".{out.name}.partial")
    lock, done = None, False
    try:  # one export at a time to a path: two would share the staging file, or mix manifests
        lock = FolderLock(out.parent, f".{out.name}.lock", "hvc-export", target=out)
        _check_destination(request)  # again, now that no other export can be writing it
        extras = EXPORTERS[spec.name](graph, request, staging)
        manifest.versions.update(extras.get("versions", {}))
        manifest.device = extras.get("device", {})
        backend = spec.load_backend_class()(staging, manifest, device)
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
                f"{out}: parity check failed ({report.summary()}); nothing written",
                remedy="force",
            )
        with atomic_path(manifest_path(out)) as tmp:  # the manifest appears with the artifact
            tmp.write_text(manifest.to_json())
            os.replace(staging, out)
        done = True
    finally:
        if lock is not None:  # a refused export leaves the staging file of the one it waits for
            staging.unlink(missing_ok=True)
            lock.release()
        for folder in [] if done else reversed(made):  # a failed export leaves no folder behind
            with contextlib.suppress(OSError):  # unless another export wrote into it meanwhile
                folder.rmdir()
    return ExportResult(out, manifest, report)


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents, as `hvc-run --out` does; the ones it made."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HvcError(f"{folder}: cannot create the output folder ({exc.strerror})") from exc
    return missing


def parity_sizes(shapes: ShapeRange) -> list[tuple[int, int]]:
    """Two sizes inside the range: a multiple of 8 and one that is not."""

    def clamp(size: tuple[int, int]) -> tuple[int, int]:
        return (
            min(max(size[0], shapes.min[0]), shapes.max[0]),
            min(max(size[1], shapes.min[1]), shapes.max[1]),
        )

    return list(dict.fromkeys([clamp((240, 432)), clamp((181, 323))]))
