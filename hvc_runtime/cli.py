"""`hvc-run` and `hvc-eval`: thin command lines over the Python API."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
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

from hvc_runtime.artifacts import manifest_path
from hvc_runtime.atomic import atomic_path
from hvc_runtime.backends import (
    ARTIFACT_BACKENDS,
    BACKENDS,
    TORCH_BACKENDS,
    EncoderBackend,
    load_backend,
)
from hvc_runtime.backends.torch_module import TorchBackend
from hvc_runtime.checkpoints import load_encoder
from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import Evaluation, evaluate
from hvc_runtime.davis.propagate import propagate_sequence
from hvc_runtime.demo import demo_inputs
from hvc_runtime.devices import resolve_device
from hvc_runtime.distributed import (
    DistContext,
    broadcast_from_main,
    gather_objects,
    init_from_env,
    shutdown,
)
from hvc_runtime.errors import HvcError
from hvc_runtime.io.frames import ImageFolderSource, open_frames
from hvc_runtime.io.masks import read_mask
from hvc_runtime.pipeline import SegmentationSummary, segment_video
from hvc_runtime.precision import DTYPES
from hvc_runtime.propagation import PROPAGATORS, PropagationConfig
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.terminal import console, user_errors

EVAL_TIMEOUT = timedelta(hours=12)  # ranks wait for the slowest shard before scoring
run_app = typer.Typer(add_completion=False, help="Segment and track objects through a video.")
eval_app = typer.Typer(
    add_completion=False, help="DAVIS J&F of result masks, optionally after running."
)

Checkpoint = Annotated[
    Path | None,
    typer.Option(
        help="Encoder: hvc .safetensors, official .pth, or an hvc-export artifact (default: shipped)."
    ),
]
Moco = Annotated[
    Path | None,
    typer.Option(help="Official MoCo-v1 ResNet-50 .pth to fuse (1280-d features, λ=1.05)."),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
Size = Annotated[
    int | None,
    typer.Option(help="Resize frames so the short side is SIZE before encoding (default: native)."),
]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, fp16 or bf16 (features and affinities).")]
Context = Annotated[int, typer.Option(help="Short-term context frames.")]
TopK = Annotated[int, typer.Option(help="Top-k candidates per position.")]
Temperature = Annotated[float, typer.Option(help="Softmax temperature.")]
Radius = Annotated[float, typer.Option(help="Window radius (feature cells) for short-term frames.")]
PadContext = Annotated[
    bool, typer.Option(help="Official padding of the context with copies of the reference frame.")
]
SoftLabels = Annotated[bool, typer.Option(help="Keep soft label maps in memory (official).")]
Mode = Annotated[
    str,
    typer.Option(
        help="Propagation: fast (local windows) or reference (dense official layout); same masks."
    ),
]
Backend = Annotated[
    str,
    typer.Option(
        help="Encoder runtime: auto, torch, torch-compile (checkpoints), or torchscript, "
        "onnxruntime, tensorrt (exported artifacts; auto reads the artifact's manifest)."
    ),
]
OfficialBnDrift = Annotated[
    bool,
    typer.Option(
        help="Replay the official loader's train-mode dummy forward, which shifts BatchNorm "
        "statistics (an official bug; needed to reproduce official masks exactly)."
    ),
]


def build_segmenter(
    checkpoint: Path | None,
    moco: Path | None,
    device: str,
    size: int | None,
    precision: str,
    config: PropagationConfig,
    mode: str = "fast",
    official_bn_drift: bool = False,
    backend: str = "auto",
) -> Segmenter:
    if precision not in DTYPES:
        raise HvcError(f"--precision {precision}: choose one of {', '.join(DTYPES)}")
    if mode not in PROPAGATORS:
        raise HvcError(f"--mode {mode}: choose one of {', '.join(PROPAGATORS)}")
    if backend not in BACKENDS:
        raise HvcError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    if size is not None and size < 8:
        raise HvcError(f"--size {size}: the short side must be at least 8 pixels")
    target = resolve_device(device)
    if checkpoint is not None and manifest_path(checkpoint).is_file():
        encoder, description, style = _artifact_encoder(
            checkpoint, moco, official_bn_drift, backend, target
        )
    else:
        if backend not in ("auto", *TORCH_BACKENDS):
            raise HvcError(
                f"--backend {backend} runs an exported encoder: export one with hvc-export "
                "and pass it as --checkpoint"
            )
        loaded = load_encoder(checkpoint, moco, official_bn_drift)
        compiled = backend == "torch-compile"
        encoder = TorchBackend(loaded.encoder, target, precision, compile=compiled)
        description = loaded.description + (" (torch.compile)" if compiled else "")
        style = "" if loaded.trained else "[yellow]warning:[/] "
    console.print(f"{style}encoder: {escape(description)}", highlight=False)
    console.print(
        f"device: {target}, precision: {precision}, size: {size or 'native'}, mode: {mode}",
        highlight=False,
        markup=False,
    )
    return Segmenter(encoder, config, target, precision, size, mode)  # type: ignore[arg-type]


def _artifact_encoder(
    artifact: Path, moco: Path | None, official_bn_drift: bool, backend: str, target
) -> tuple[EncoderBackend, str, str]:
    """An exported encoder; its manifest picks the runtime, which --backend may only confirm."""
    if moco is not None:
        raise HvcError(f"{artifact}: an exported artifact already fixes its features; drop --moco")
    if official_bn_drift:
        raise HvcError(
            f"{artifact}: an exported artifact already fixes its weights; drop --official-bn-drift"
        )
    encoder, manifest = load_backend(artifact, target)
    runtime = ARTIFACT_BACKENDS[manifest.format]
    if backend not in ("auto", runtime):
        raise HvcError(f"{artifact}: a {manifest.format} artifact runs on {runtime}, not {backend}")
    description = f"{manifest.format} {manifest.precision} artifact {artifact} on {runtime}"
    style = "" if manifest.parity.get("passed") else "[yellow]warning:[/] parity failed, "
    return encoder, description, style


def make_config(context: int, topk: int, temperature: float, radius: float, pad: bool, soft: bool):
    try:
        return PropagationConfig(context, topk, temperature, radius, pad, soft)
    except ValueError as exc:
        raise HvcError(f"propagation settings: {exc}") from exc


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


def _prepare_output(out: Path, overwrite: bool, replaceable: frozenset[str] = frozenset()) -> None:
    """Create `out`; refuse a folder holding anything but a previous result (`replaceable`)."""
    if out.exists() and not out.is_dir():
        raise HvcError(f"{out}: output path exists and is not a folder")
    others = [p.name for p in out.iterdir() if p.name not in replaceable] if out.is_dir() else []
    if others and not overwrite:
        raise HvcError(
            f"{out}: output folder already holds other files ({', '.join(sorted(others)[:3])}); "
            "choose an empty one or pass --overwrite"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HvcError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    if not os.access(out, os.W_OK):
        raise HvcError(f"{out}: output folder is not writable")


RUN_OUTPUTS = frozenset({"masks", "overlay.mp4", "summary.json"})


def _first_mask(mask_path: Path, height: int, width: int, resize_mask: bool) -> np.ndarray:
    mask = read_mask(mask_path)
    if mask.shape != (height, width):
        if not resize_mask:
            raise HvcError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but the video is "
                f"{width}x{height}; pass --resize-mask to scale it (nearest neighbour)"
            )
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    if not mask.any():
        raise HvcError(f"{mask_path}: mask holds no object (every pixel is background 0)")
    return mask


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))


@run_app.command()
def run(
    video: Annotated[Path | None, typer.Argument(help="Video file or folder of frames.")] = None,
    mask: Annotated[
        Path | None, typer.Argument(help="First-frame id mask (palette/grey PNG).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: hvc_out/<video name>).")
    ] = None,
    checkpoint: Checkpoint = None,
    moco: Moco = None,
    device: Device = "auto",
    size: Size = None,
    precision: PrecisionOpt = "fp32",
    resize_mask: Annotated[
        bool, typer.Option(help="Scale a mask of another size to the video.")
    ] = False,
    overlay: Annotated[bool, typer.Option(help="Also write overlay.mp4.")] = True,
    overwrite: Annotated[
        bool, typer.Option(help="Write into a folder that already holds files.")
    ] = False,
    demo: Annotated[
        bool, typer.Option(help="Run the embedded demo clip (the default with no VIDEO).")
    ] = False,
    context: Context = 50,
    topk: TopK = 15,
    temperature: Temperature = 0.1,
    radius: Radius = 12.0,
    pad_context: PadContext = True,
    soft_labels: SoftLabels = True,
    mode: Mode = "fast",
    backend: Backend = "auto",
    official_bn_drift: OfficialBnDrift = False,
) -> None:
    """Segment VIDEO from the objects in MASK (first frame); writes palette PNGs and an overlay."""
    with user_errors():
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
        source = open_frames(video)
        first = _first_mask(mask, source.height, source.width, resize_mask)
        out = (
            out
            if out is not None
            else Path("hvc_out") / (video.stem if video.is_file() else video.name)
        )
        config = make_config(context, topk, temperature, radius, pad_context, soft_labels)
        segmenter = build_segmenter(
            checkpoint, moco, device, size, precision, config, mode, official_bn_drift, backend
        )
        _prepare_output(out, overwrite, RUN_OUTPUTS)
        with _progress(f"segmenting {video.name}", len(source)) as advance:
            overlay_path = out / "overlay.mp4" if overlay else None
            summary = segment_video(
                source, {0: first}, segmenter, out / "masks", overlay_path, advance
            )
        _write_json(out / "summary.json", _summary_payload(summary, video, mask, segmenter))
        console.print(
            f"{summary.frames} frames, objects {summary.object_ids}, {summary.seconds:.1f} s "
            f"({summary.seconds_per_frame:.3f} s/frame)\nmasks: {summary.masks_dir}/"
            + (f"\noverlay: {summary.overlay}" if summary.overlay else "")
            + f"\nsummary: {out / 'summary.json'}",
            highlight=False,
            markup=False,
        )


def _summary_payload(
    summary: SegmentationSummary, video: Path, mask: Path, segmenter: Segmenter
) -> dict:
    cfg = segmenter.propagator.config
    return {
        "video": str(video),
        "mask": str(mask),
        "frames": summary.frames,
        "seconds": summary.seconds,
        "object_ids": summary.object_ids,
        "masks": str(summary.masks_dir),
        "overlay": str(summary.overlay) if summary.overlay else None,
        "device": str(segmenter.device),
        "precision": segmenter.precision,
        "mode": segmenter.mode,
        "size": segmenter.short_side,
        "propagation": cfg.__dict__,
    }


@eval_app.command()
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
    checkpoint: Checkpoint = None,
    moco: Moco = None,
    device: Device = "auto",
    size: Size = None,
    precision: PrecisionOpt = "fp32",
    context: Context = 50,
    topk: TopK = 15,
    temperature: Temperature = 0.1,
    radius: Radius = 12.0,
    pad_context: PadContext = True,
    soft_labels: SoftLabels = True,
    mode: Mode = "fast",
    backend: Backend = "auto",
    official_bn_drift: OfficialBnDrift = False,
) -> None:
    """Score RESULTS against DAVIS ground truth; writes the official CSV files into RESULTS.

    With --run under `torchrun --nproc-per-node N`, the sequences are split across the N
    processes (one GPU each on CUDA) and rank 0 scores them all once every shard is written.
    """
    with user_errors():
        dataset = DavisDataset(davis, resolution)
        names = sequences.split(",") if sequences else dataset.sequences(split)
        timing: dict[str, tuple[int, float]] = {}
        target = resolve_device(device) if run else None
        group = init_from_env(target.type if target else "cpu", timeout=EVAL_TIMEOUT)
        console.quiet = not group.is_main  # errors still print on every rank
        if (
            group.enabled
            and target is not None
            and target.type == "cuda"
            and device
            in (
                "auto",
                "cuda",
            )
        ):
            device = f"cuda:{group.local_rank}"  # one GPU per process
        if run:
            config = make_config(context, topk, temperature, radius, pad_context, soft_labels)
            segmenter = build_segmenter(
                checkpoint, moco, device, size, precision, config, mode, official_bn_drift, backend
            )
            _prepare_output_on_main(group, results, overwrite)
            for name in names[group.rank :: group.world_size]:
                frames = len(ImageFolderSource(dataset.frames_dir(name)))
                with _progress(name, frames) as advance:
                    summary = propagate_sequence(
                        dataset, name, segmenter, results, all_annotations, advance
                    )
                timing[name] = (summary.frames, summary.seconds)
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


def _prepare_output_on_main(group: DistContext, results: Path, overwrite: bool) -> None:
    """Rank 0 checks and creates RESULTS; every rank stops with its error if that fails."""
    error = None
    if group.is_main:
        try:
            _prepare_output(results, overwrite)
        except HvcError as exc:
            error = str(exc)
    error = broadcast_from_main(group, error)
    if error is not None:
        raise HvcError(error)


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
