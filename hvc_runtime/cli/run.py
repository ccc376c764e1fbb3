"""`hvc-run`: segment a video from a first-frame mask into a result folder (thin over the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from hvc_runtime.cli.demo import demo_inputs
from hvc_runtime.cli.options import FLAGS, PROPAGATION, SEGMENTER, api_command, build_segmenter
from hvc_runtime.cli.terminal import console, progress
from hvc_runtime.io.frames import open_frames
from hvc_runtime.io.masks import read_mask
from hvc_runtime.io.results import ResultFolder
from hvc_runtime.pipeline import SegmentationSummary, segment_video
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.errors import HvcError

RUN_OUTPUTS = ("masks", "overlay.mp4")

run_app = typer.Typer(add_completion=False, help="Segment and track objects through a video.")


def _first_mask(mask_path: Path, height: int, width: int, resize_mask: bool) -> np.ndarray:
    mask = read_mask(mask_path)
    if mask.shape != (height, width):
        if not resize_mask:
            raise HvcError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but the video is "
                f"{width}x{height}; --resize-mask scales it (nearest neighbour)"
            )
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    if not mask.any():
        raise HvcError(f"{mask_path}: mask holds no object (every pixel is background 0)")
    return mask


@run_app.command()
@api_command(FLAGS, segmenter=SEGMENTER, propagation=PROPAGATION)
def run(
    video: Annotated[Path | None, typer.Argument(help="Video file or folder of frames.")] = None,
    mask: Annotated[
        Path | None, typer.Argument(help="First-frame id mask (palette/grey PNG).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: hvc_out/<video name>).")
    ] = None,
    resize_mask: Annotated[
        bool, typer.Option(help="Scale a mask of another size to the video.")
    ] = False,
    overlay: Annotated[bool, typer.Option(help="Also write overlay.mp4.")] = True,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Write into a folder that holds other files (an earlier hvc-run result there "
            "is always replaced; inputs of the run never are)."
        ),
    ] = False,
    allow_partial: Annotated[
        bool, typer.Option(help="Keep the frames of a video that stops decoding early.")
    ] = False,
    demo: Annotated[
        bool, typer.Option(help="Run the embedded demo clip (the default with no VIDEO).")
    ] = False,
    *,
    segmenter: dict,
    propagation: PropagationConfig,
) -> None:
    """Segment VIDEO from the objects in MASK (first frame); writes palette PNGs and an overlay."""
    if demo or video is None:
        if video is not None or mask is not None:
            raise HvcError("--demo takes no VIDEO or MASK")
        video, mask = demo_inputs()
        console.print(
            f"demo: generated clip {video} with first-frame mask {mask}",
            highlight=False,
            markup=False,
        )
    elif mask is None:
        raise HvcError(f"{video}: a first-frame MASK is required (hvc-run VIDEO MASK)")
    source = open_frames(video, allow_partial=allow_partial)
    first = _first_mask(mask, source.height, source.width, resize_mask)
    out = (
        out
        if out is not None
        else Path("hvc_out") / (video.stem if video.is_file() else video.name)
    )
    inputs = [p for p in (video, mask, segmenter["checkpoint"], segmenter["moco"]) if p]
    result = ResultFolder(out, RUN_OUTPUTS, overwrite=overwrite, inputs=inputs)
    engine = build_segmenter(segmenter, propagation)
    try:
        staging = result.open()
        with progress(f"segmenting {video.name}", len(source)) as advance:
            summary = segment_video(
                source,
                {0: first},
                engine,
                masks_dir=staging / "masks",
                overlay=staging / "overlay.mp4" if overlay else None,
                on_frame=advance,
            )
        result.commit(_summary_payload(summary, video, mask, engine, out, overlay))
    except BaseException:
        result.abort()
        raise
    console.print(
        f"{summary.frames} frames, objects {summary.object_ids}, {summary.seconds:.1f} s "
        f"({summary.seconds_per_frame:.3f} s/frame)\nmasks: {out / 'masks'}/"
        + (f"\noverlay: {out / 'overlay.mp4'}" if overlay else "")
        + f"\nsummary: {out / 'summary.json'}",
        highlight=False,
        markup=False,
    )


def _summary_payload(
    summary: SegmentationSummary,
    video: Path,
    mask: Path,
    segmenter: Segmenter,
    out: Path,
    overlay: bool,
) -> dict:
    # absolute paths: the summary is read later, from wherever, not from the working directory
    video, mask, out = video.resolve(), mask.resolve(), out.resolve()
    return {
        "video": str(video),
        "mask": str(mask),
        "frames": summary.frames,
        "seconds": summary.seconds,
        "object_ids": summary.object_ids,
        "masks": str(out / "masks"),
        "overlay": str(out / "overlay.mp4") if overlay else None,
        "encoder": segmenter.source.description,
        "device": str(segmenter.device),
        "precision": segmenter.precision,
        "mode": segmenter.mode,
        "size": segmenter.short_side,
        "propagation": segmenter.propagator.config.__dict__,
    }
