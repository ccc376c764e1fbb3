"""`hvc-run`: segment a video from a first-frame mask into a result folder (thin over the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hvc_runtime.cli.demo import demo_inputs
from hvc_runtime.cli.jobs import run_job_list
from hvc_runtime.cli.options import (
    FLAGS,
    PROPAGATION,
    SEGMENTER,
    api_command,
    build_segmenter,
    local_weights,
)
from hvc_runtime.cli.terminal import HELP_LAYOUT, console, progress
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.runs import VideoRun
from hvc_runtime.utils.errors import HvcError

run_app = typer.Typer(
    add_completion=False, help="Segment and track objects through a video.", **HELP_LAYOUT
)


@run_app.command()
@api_command(FLAGS, segmenter=SEGMENTER, propagation=PROPAGATION)
def run(
    video: Annotated[
        Path | None, typer.Argument(metavar="VIDEO", help="Video file or folder of frames.")
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Argument(
            metavar="MASK",
            help="First-frame id mask (palette/grey PNG), or a folder of masks named after "
            "frames (objects appearing later get theirs at that frame).",
        ),
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
    jobs: Annotated[
        Path | None,
        typer.Option(
            help="CSV job list (header video,mask,name; paths relative to it): each job into "
            "OUT/<name>/; shared out across torchrun processes; a rerun resumes."
        ),
    ] = None,
    *,
    segmenter: dict,
    propagation: PropagationConfig,
) -> None:
    """Segment VIDEO from the objects in MASK (first frame); writes palette PNGs and an overlay.

    With no VIDEO, the embedded demo clip. With --jobs, every video of a CSV job list into
    OUT/<name>/ (see docs/cli.md).
    """
    if jobs is not None:
        if video is not None or mask is not None or demo:
            raise HvcError(f"{jobs}: --jobs takes no VIDEO, MASK or --demo (the list names them)")
        if out is None:
            raise HvcError(f"{jobs}: --jobs needs --out, the folder the jobs' results go into")
        run_job_list(
            jobs,
            out,
            segmenter,
            propagation,
            overlay=overlay,
            overwrite=overwrite,
            resize_mask=resize_mask,
            allow_partial=allow_partial,
        )
        return
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
    out = (
        out
        if out is not None
        else Path("hvc_out") / (video.stem if video.is_file() else video.name)
    )
    single = VideoRun(
        video,
        mask,
        out,
        overlay=overlay,
        overwrite=overwrite,
        resize_mask=resize_mask,
        allow_partial=allow_partial,
        protected=local_weights(segmenter),
    )
    engine = build_segmenter(segmenter, propagation)
    with progress(f"segmenting {video.name}", single.source.length) as advance:
        summary = single.run(engine, on_frame=advance)
    console.print(
        f"{summary.frames} frames, objects {summary.object_ids}, {summary.seconds:.1f} s "
        f"({summary.seconds_per_frame:.3f} s/frame)\nmasks: {out / 'masks'}/"
        + (f"\noverlay: {out / 'overlay.mp4'}" if overlay else "")
        + f"\nsummary: {out / 'summary.json'}",
        highlight=False,
        markup=False,
    )
