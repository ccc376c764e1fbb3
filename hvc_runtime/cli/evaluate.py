"""`hvc-eval`: DAVIS J&F of result masks, optionally after propagating over the dataset.

With --run under `torchrun`, the sequences are split across the processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hvc_runtime.cli.options import FLAGS, PROPAGATION, SEGMENTER, api_command, build_segmenter
from hvc_runtime.cli.terminal import HELP_LAYOUT, console, progress
from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import Evaluation, evaluate
from hvc_runtime.davis.propagate import propagate_sequence
from hvc_runtime.io.frames import ImageFolderSource
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.devices import resolve_device
from hvc_runtime.utils.distributed import (
    gather_objects,
    init_from_env,
    rank_device,
    run_on_main,
    shutdown,
)
from hvc_runtime.utils.errors import HvcError, listing
from hvc_runtime.utils.interrupts import Interrupted
from hvc_runtime.utils.locks import FolderLock

EVAL_TIMEOUT = timedelta(hours=12)  # ranks wait for the slowest shard before scoring
EVAL_LOCK = ".hvc-eval.lock"  # in RESULTS, held by the `--run` writing into it (see FolderLock)

eval_app = typer.Typer(
    add_completion=False, help="DAVIS J&F of result masks, optionally after running.", **HELP_LAYOUT
)


@eval_app.command()
@api_command(FLAGS, segmenter=SEGMENTER, propagation=PROPAGATION)
def evaluate_command(
    results: Annotated[
        Path,
        typer.Argument(
            metavar="RESULTS",
            help="Folder of <sequence>/<frame>.png results, or of hvc-run result folders "
            "<sequence>/masks/<frame>.png (hvc-run --jobs).",
        ),
    ],
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
    names = dataset.named(sequences.split(",")) if sequences else dataset.sequences(split)
    if not run and not results.is_dir():
        raise HvcError(f"{results}: results folder not found (--run writes one)")
    timing: dict[str, tuple[int, float]] = {}
    target = resolve_device(segmenter["device"]) if run else None
    group = init_from_env(target.type if target else "cpu", timeout=EVAL_TIMEOUT)
    console.quiet = not group.is_main  # errors still print on every rank
    claim: tuple[FolderLock, bool] | None = None  # rank 0's: held until the scores are written
    try:
        if run:
            segmenter["device"] = str(rank_device(group, target))
            engine = build_segmenter(segmenter, propagation)
            protected = (dataset.image_root, dataset.annotation_root)
            claim = run_on_main(group, lambda: _claim_output(results, overwrite, protected))
            try:
                for name in names[group.rank :: group.world_size]:
                    timing[name] = _propagate(dataset, name, engine, results, all_annotations)
            except BaseException:
                if claim is not None:
                    _abandon(results, *claim)
                raise
            timing = {k: v for shard in gather_objects(group, timing) for k, v in shard.items()}
        shutdown(group)
        if not group.is_main:
            return
        evaluation = evaluate(dataset, results, names, single_object)
        global_csv, _ = evaluation.write_csv(csv_dir or results, split)
    finally:
        if claim is not None:
            claim[0].release()
    _print_scores(evaluation, timing)
    console.print(
        f"CSV: {global_csv} and per-sequence_results-{split}.csv", highlight=False, markup=False
    )


def _propagate(
    dataset: DavisDataset, name: str, segmenter: Segmenter, results: Path, all_annotations: bool
) -> tuple[int, float]:
    frames = ImageFolderSource(dataset.frames_dir(name)).length
    try:
        with progress(name, frames) as advance:
            summary = propagate_sequence(
                dataset, name, segmenter, results, all_annotations=all_annotations, on_frame=advance
            )
    except Interrupted as stop:
        raise stop.with_detail(
            f"{name} {stop.detail}; finished sequences stay in {results}"
        ) from None
    return summary.frames, summary.seconds


def _claim_output(
    results: Path, overwrite: bool, protected: Iterable[Path]
) -> tuple[FolderLock, bool]:
    """Create `results` and lock it for this run (and whether this call created it): a second
    `hvc-eval --run` into it is refused at once, naming this one. A folder holding files is
    refused unless `overwrite`, and results never go into the dataset itself."""
    for folder in protected:
        if results.resolve().is_relative_to(folder.resolve()):
            raise HvcError(f"{results}: inside the dataset's {folder}; results go elsewhere")
    if results.exists() and not results.is_dir():
        raise HvcError(f"{results}: output path exists and is not a folder")
    created = not results.exists()
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HvcError(f"{results}: cannot create the output folder ({exc.strerror})") from exc
    if not os.access(results, os.W_OK):
        raise HvcError(f"{results}: output folder is not writable")
    lock = FolderLock(results, EVAL_LOCK, "hvc-eval --run")
    others = sorted(p.name for p in results.iterdir() if p.name != EVAL_LOCK)
    if others and not overwrite:
        _abandon(results, lock, created)
        raise HvcError(
            f"{results}: output folder already holds other files ({listing(others)})",
            remedy="overwrite",
        )
    return lock, created


def _abandon(results: Path, lock: FolderLock, created: bool) -> None:
    """Unlock `results`, and remove it if this run created it and left it empty."""
    lock.release()
    if created and results.is_dir() and not any(results.iterdir()):
        results.rmdir()


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
