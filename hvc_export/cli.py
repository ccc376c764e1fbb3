"""`hvc-export CHECKPOINT --format torchscript|onnx|trt`: a verified artifact and its manifest."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from hvc_export.exporter import default_artifact_path, export
from hvc_export.graph import ShapeRange, parse_shape
from hvc_export.request import ExportRequest
from hvc_runtime.cli.terminal import HELP_LAYOUT, console, user_errors
from hvc_runtime.encoder.formats import FORMATS
from hvc_runtime.encoder.precision import EXPORT_PRECISIONS
from hvc_runtime.encoder.published import model_names
from hvc_runtime.io.frames import open_frames
from hvc_runtime.utils.errors import HvcError

app = typer.Typer(
    add_completion=False, help="Export the HVC encoder for deployment.", **HELP_LAYOUT
)
FORMAT_HELP = "; ".join(f"{s.name} ({s.suffix}): {s.description}" for s in FORMATS.values()) + "."


@app.command()
def main(
    checkpoint: Annotated[
        str | None,
        typer.Argument(
            metavar="CHECKPOINT",
            help="Encoder checkpoint: .safetensors, official .pth, one of the authors' models "
            f"({', '.join(model_names('checkpoint'))}) or an https:// URL (see docs/models.md).",
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Artifact path (default: beside the checkpoint; in the working folder for a "
            "model name or a URL)."
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help=" or ".join(EXPORT_PRECISIONS) + ".")] = "fp32",
    moco: Annotated[
        str | None,
        typer.Option(
            help=f"MoCo-v1 ResNet-50 ({', '.join(model_names('moco'))}, an official .pth or an "
            "https:// URL): one fused 1280-d graph."
        ),
    ] = None,
    min_shape: Annotated[str, typer.Option(help="Smallest frame, HEIGHTxWIDTH.")] = "64x64",
    opt_shape: Annotated[str, typer.Option(help="Typical frame, HEIGHTxWIDTH.")] = "480x864",
    max_shape: Annotated[str, typer.Option(help="Largest frame, HEIGHTxWIDTH.")] = "1088x1920",
    max_batch: Annotated[int, typer.Option(help="Largest batch.")] = 8,
    parity_frames: Annotated[
        Path | None,
        typer.Option(help="Video or frame folder for the parity check (default: generated)."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Write even if parity fails (recorded in the manifest).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing artifact (never the source checkpoint).")
    ] = False,
    workspace_gb: Annotated[float, typer.Option(help="TensorRT workspace limit.")] = 4.0,
    timing_cache: Annotated[
        Path | None, typer.Option(help="TensorRT timing cache file (reused).")
    ] = None,
    version_compatible: Annotated[
        bool, typer.Option(help="TensorRT engine runnable by the lean runtime / later versions.")
    ] = False,
) -> None:
    """Export CHECKPOINT (default: the default encoder) and verify it against PyTorch."""
    with user_errors():
        shapes = ShapeRange(parse_shape(min_shape), parse_shape(opt_shape), parse_shape(max_shape))
        if not (math.isfinite(workspace_gb) and workspace_gb > 0):
            raise HvcError(f"--workspace-gb {workspace_gb}: must be a positive number")
        if out is None:
            out = default_artifact_path(checkpoint, format, precision)
        frames = None
        if parity_frames is not None:
            frames = [
                frame.rgb for _, frame in zip(range(6), open_frames(parity_frames), strict=False)
            ]
        request = ExportRequest(
            checkpoint=checkpoint,
            format=format,
            out=out,
            precision=precision,
            moco=moco,
            shapes=shapes,
            max_batch=max_batch,
            parity_frames=frames,
            force=force,
            overwrite=overwrite,
            workspace_bytes=int(workspace_gb * (1 << 30)),
            timing_cache=timing_cache,
            version_compatible=version_compatible,
        )
        result = export(request)
    verdict = "passed" if result.report.passed else "FAILED (written because of --force)"
    console.print(
        f"{format} {precision} artifact: {result.artifact}\nmanifest: {result.artifact}.json\n"
        f"parity {verdict}: {result.report.summary()}",
        highlight=False,
        markup=False,
    )
