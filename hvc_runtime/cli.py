"""`hvc-run` and `hvc-eval`: thin command lines over the Python API.

Their encoder and propagation options are generated from `Segmenter.from_checkpoint` and
`PropagationConfig` (`cli_options`), so names, types and defaults live in the API alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hvc_runtime.backends import TORCH_BACKENDS
from hvc_runtime.cli_options import OptionGroup, api_command
from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import Evaluation, evaluate
from hvc_runtime.davis.propagate import propagate_sequence
from hvc_runtime.demo import demo_inputs
from hvc_runtime.devices import resolve_device
from hvc_runtime.distributed import (
    gather_objects,
    init_from_env,
    rank_device,
    run_on_main,
    shutdown,
)
from hvc_runtime.errors import HvcError
from hvc_runtime.formats import FORMATS
from hvc_runtime.interrupts import Interrupted
from hvc_runtime.io.frames import ImageFolderSource, open_frames
from hvc_runtime.io.masks import read_mask
from hvc_runtime.io.results import ResultFolder
from hvc_runtime.pipeline import SegmentationSummary, segment_video
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.terminal import console

EVAL_TIMEOUT = timedelta(hours=12)  # ranks wait for the slowest shard before scoring
RUN_OUTPUTS = ("masks", "overlay.mp4")
FLAGS = {"context_size": "--context", "short_side": "--size"}
SEGMENTER = OptionGroup(
    Segmenter.from_checkpoint,
    help={
        "checkpoint": "Encoder: hvc .safetensors, official .pth, or an hvc-export artifact "
        "(default: the default encoder).",
        "device": "auto, cpu, cuda, cuda:N or mps.",
        "precision": "fp32, fp16 or bf16 (features and affinities).",
        "backend": f"Encoder runtime: auto, {', '.join(TORCH_BACKENDS)} (checkpoints), or "
        f"{', '.join(spec.runtime for spec in FORMATS.values())} (exported artifacts; auto "
        "reads the artifact's manifest).",
        "mode": "Propagation: fast (local windows) or reference (dense official layout); "
        "same masks.",
        "kernel": "Scoring kernel of the fast mode: auto (Triton on CUDA), torch or triton.",
        "gpu_decode": "Decode JPEG frame folders on the GPU (nvJPEG; its pixels differ slightly "
        "from PIL's: turn it off to compare with CPU or official runs exactly).",
        "short_side": "Resize frames so the short side is SIZE before encoding (default: native).",
        "moco": "Official MoCo-v1 ResNet-50 .pth to fuse (1280-d features, λ=1.05).",
        "official_bn_drift": "Replay the official loader's train-mode dummy forward, which "
        "shifts BatchNorm statistics (an official bug; needed to reproduce official masks).",
    },
    skip=frozenset({"config"}),
)
PROPAGATION = OptionGroup(PropagationConfig, build=lambda values: PropagationConfig(**values))

run_app = typer.Typer(add_completion=False, help="Segment and track objects through a video.")
eval_app = typer.Typer(
    add_completion=False, help="DAVIS J&F of result masks, optionally after running."
)


def build_segmenter(options: dict, config: PropagationConfig) -> Segmenter:
    """`Segmenter.from_checkpoint` with the options, saying which encoder it loaded."""
    segmenter = Segmenter.from_checkpoint(config=config, **options)
    source = segmenter.source
    style = (
        ""
        if source.trusted
        else "[yellow]warning:[/] " + (f"{source.caveat}, " if source.caveat else "")
    )
    console.print(f"{style}encoder: {escape(source.description)}", highlight=False)
    console.print(
        f"device: {segmenter.device}, precision: {segmenter.precision}, "
        f"size: {segmenter.short_side or 'native'}, mode: {segmenter.mode}",
        highlight=False,
        markup=False,
    )
    return segmenter


@contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total or None)
        yield lambda done: progress.update(task, completed=done)


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
        with _progress(f"segmenting {video.name}", len(source)) as advance:
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


@eval_app.command()
@api_command(FLAGS, segmenter=SEGMENTER, propagation=PROPAGATION)
def evaluate_command(
    results: Annotated[Path, typer.Argument(help="Folder of <sequence>/<frame>.png results.")],
    davis: Annotated[Path, typer.Option(help="DAVIS-format dataset root (ground truth).")],
    split: Annotated[str, typer.Option(help="ImageSets list to score.")] = "val",
    sequences: Annotated[
        str | None, typer.Option(help="Comma-separated subset of sequences.")
    ] = None,
    resolution: Annotated[str, typer.Option(help="Resolution folder.")] = "480p",
    single_object: Annotated[
        bool, typer.Option(help="Merge all ids into one object (DAVIS-2016).")
    ] = False,
    run: Annotated[
        bool, typer.Option("--run", help="Propagate over the dataset first, into RESULTS.")
    ] = False,
    all_annotations: Annotated[
        bool, typer.Option(help="With --run: use every annotation file (YouTube-VOS protocol).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="With --run: write into a non-empty RESULTS.")
    ] = False,
    csv_dir: Annotated[
        Path | None, typer.Option(help="Where the CSV files go (default: RESULTS).")
    ] = None,
    *,
    segmenter: dict,
    propagation: PropagationConfig,
) -> None:
    """Score RESULTS against DAVIS ground truth; writes the official CSV files into RESULTS.

    With --run under `torchrun --nproc-per-node N`, the sequences are split across the N
    processes (one GPU each on CUDA) and rank 0 scores them all once every shard is written.
    """
    dataset = DavisDataset(davis, resolution)
    names = sequences.split(",") if sequences else dataset.sequences(split)
    if not run and not results.is_dir():
        raise HvcError(f"{results}: results folder not found (--run writes one)")
    timing: dict[str, tuple[int, float]] = {}
    target = resolve_device(segmenter["device"]) if run else None
    group = init_from_env(target.type if target else "cpu", timeout=EVAL_TIMEOUT)
    console.quiet = not group.is_main  # errors still print on every rank
    if run:
        segmenter["device"] = str(rank_device(group, target))
        engine = build_segmenter(segmenter, propagation)
        protected = (dataset.image_root, dataset.annotation_root)
        created = run_on_main(group, lambda: _prepare_output(results, overwrite, protected))
        try:
            for name in names[group.rank :: group.world_size]:
                timing[name] = _propagate(dataset, name, engine, results, all_annotations)
        except BaseException:
            if created and not any(results.iterdir()):
                results.rmdir()
            raise
        timing = {k: v for shard in gather_objects(group, timing) for k, v in shard.items()}
    shutdown(group)
    if not group.is_main:
        return
    evaluation = evaluate(dataset, results, names, single_object)
    global_csv, _ = evaluation.write_csv(csv_dir or results, split)
    _print_scores(evaluation, timing)
    console.print(
        f"CSV: {global_csv} and per-sequence_results-{split}.csv", highlight=False, markup=False
    )


def _propagate(
    dataset: DavisDataset, name: str, segmenter: Segmenter, results: Path, all_annotations: bool
) -> tuple[int, float]:
    frames = len(ImageFolderSource(dataset.frames_dir(name)))
    try:
        with _progress(name, frames) as advance:
            summary = propagate_sequence(
                dataset, name, segmenter, results, all_annotations=all_annotations, on_frame=advance
            )
    except Interrupted as stop:
        raise stop.with_detail(
            f"{name} {stop.detail}; finished sequences stay in {results}"
        ) from None
    return summary.frames, summary.seconds


def _prepare_output(results: Path, overwrite: bool, protected: Iterable[Path]) -> bool:
    """Create `results` (True if this call did); refuse a folder holding files unless
    `overwrite`, and never write into the dataset itself."""
    for folder in protected:
        if results.resolve().is_relative_to(folder.resolve()):
            raise HvcError(f"{results}: inside the dataset's {folder}; results go elsewhere")
    if results.exists() and not results.is_dir():
        raise HvcError(f"{results}: output path exists and is not a folder")
    others = sorted(p.name for p in results.iterdir()) if results.is_dir() else []
    if others and not overwrite:
        raise HvcError(
            f"{results}: output folder already holds other files ({', '.join(others[:3])})",
            remedy="overwrite",
        )
    created = not results.exists()
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HvcError(f"{results}: cannot create the output folder ({exc.strerror})") from exc
    if not os.access(results, os.W_OK):
        raise HvcError(f"{results}: output folder is not writable")
    return created


def _print_scores(evaluation: Evaluation, timing: dict[str, tuple[int, float]]) -> None:
    table = Table("sequence", "J&F", "J", "F", "s/frame")
    for name, (j, f) in evaluation.per_sequence().items():
        frames, seconds = timing.get(name, (0, 0.0))
        per_frame = f"{seconds / frames:.3f}" if frames else "-"
        table.add_row(
            name, f"{100 * (j + f) / 2:.1f}", f"{100 * j:.1f}", f"{100 * f:.1f}", per_frame
        )
    table.add_row(
        "global (objects)",
        f"{100 * evaluation.jf_mean:.1f}",
        f"{100 * evaluation.j_mean:.1f}",
        f"{100 * evaluation.f_mean:.1f}",
        "",
        style="bold",
    )
    Console().print(table)
