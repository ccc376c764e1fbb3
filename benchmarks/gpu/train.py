"""The default recipe at the official budget, in one time-budgeted command for a CUDA machine.

Trains `hvc-train`'s default recipe (the official one, default memory layout) on the 30
DAVIS-2016 train videos, each listed 20 times (164 steps an epoch), for 14 epochs: 2,296 steps of
batch 128 at 256 px, the budget at which the official code learned and the channels-last run
collapsed. Health figures every 100 steps (the trainer's own, on 8 training frames, and the
yardstick: blackswan frame 0 at 854×480), then the encoder is exported as fp16 safetensors and
measured: health on the yardstick, J&F on the DAVIS-2016 val videos (fast mode, fp16 on CUDA),
beside a random encoder's J&F from the same run. Each result goes to `OUT/training.json` as soon
as it exists, the encoder to `OUT/encoder-fp16.safetensors`. Training stops cleanly after
`--train-budget-s` seconds (a checkpoint, then the export from it), so the measurements still fit
a time limit set around the command; `--resume` with the same `--run-dir` continues it exactly.

    python -m benchmarks.gpu.train --data DAVIS2016 --run-dir runs/official-budget --out results
    python -m benchmarks.gpu.train --data DAVIS2016 --run-dir runs/official-budget --out results \\
        --resume                                      # when the record says `stopped_early`

About 8 minutes on an H100 (2,296 steps at ~0.17 s, an estimate). `--smoke` runs the same code
on a tiny tree on the CPU in about a minute (tests/test_gpu_runs.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from benchmarks.gpu.common import (
    DAVIS2016,
    SMOKE_SHORT_SIDE,
    Record,
    dev_jf,
    require_davis,
    run_environment,
    smoke_tree,
    yardstick_health,
    yardstick_probe,
)
from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.encoder.checkpoints import (
    CheckpointHeader,
    load_encoder,
    random_encoder,
    save_encoder,
)
from hvc_runtime.utils.devices import resolve_device
from hvc_runtime.utils.errors import OptionError
from hvc_runtime.utils.interrupts import Interrupted, interrupts_raise
from hvc_runtime.utils.provenance import git_revision
from hvc_train.config import TrainConfig
from hvc_train.health import spatial_convs
from hvc_train.loop import HealthPoint, train
from hvc_train.model import HVCNetwork
from hvc_train.rundir import CHECKPOINT, ENCODER

app = typer.Typer(add_completion=False, help=__doc__)
RECORD = "training.json"
ENCODER_FP16 = "encoder-fp16.safetensors"
OFFICIAL_BUDGET = {  # the official run: 30 videos × 20 listings = 164 steps an epoch, 14 epochs
    "repeat": 20,
    "epochs": 14,
    "image_size": 256,
    "batch_size": 128,
    "health_every": 100,
    "log_every": 20,
    "checkpoint_every": 100,
}
SMOKE_BUDGET = {
    "repeat": 1,
    "epochs": 2,
    "max_steps": 4,
    "image_size": 64,
    "batch_size": 4,
    "health_every": 2,
    "log_every": 1,
    "checkpoint_every": 2,
    "workers": 0,
}


def run_config(davis: Path, smoke: bool, workers: int, device: str, **changes: Any) -> TrainConfig:
    """The default recipe on the DAVIS-2016 train videos at the official (or smoke) budget."""
    budget = {**OFFICIAL_BUDGET, "workers": workers, **(SMOKE_BUDGET if smoke else {})}
    return TrainConfig(
        videos=[str(davis)], video_split="train", device=device, **{**budget, **changes}
    )


def initial_weights(seed: int) -> dict[str, torch.Tensor]:
    """The k×k trunk filters a run with `seed` starts from (the trainer seeds, then builds the
    network), so the change since step 0 is measured after a resume too."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = HVCNetwork().online_encoder
    return {name: weight.detach() for name, weight in spatial_convs(trunk).items()}


class HealthLog:
    """`train(on_health=...)`: each measurement, and the yardstick figures of the trunk at that
    step (the change measured from step 0), appended to the record at once."""

    def __init__(self, record: Record, probe: torch.Tensor, seed: int, key: str = "health") -> None:
        self.record, self.probe, self.key = record, probe, key
        self.initial = initial_weights(seed)

    def __call__(self, point: HealthPoint) -> None:
        device = next(point.trunk.parameters()).device
        self.initial = {name: weight.to(device) for name, weight in self.initial.items()}
        yardstick = yardstick_health(point.trunk, self.probe, self.initial)
        self.record.append(
            self.key,
            {
                "step": point.step,
                "images_per_second": point.images_per_second,
                "train_probe": point.figures.scalars(),
                "yardstick": yardstick,
            },
        )
        print(
            f"step {point.step}: rank {yardstick['effective_rank']:.1f} "
            f"DC l1 {yardstick['dc_share/layer1']:.3f} "
            f"{point.images_per_second:.0f} images/s",
            flush=True,
        )


def train_within(
    config: TrainConfig,
    run_dir: Path,
    budget_s: float,
    on_health: Callable[[HealthPoint], None],
    resume: bool = False,
) -> dict[str, Any]:
    """Train (or continue the run in `run_dir`); past `budget_s` seconds a SIGTERM stops it
    after the current step with a checkpoint, and the encoder is exported from that
    checkpoint. Returns what happened. (A SIGTERM before the loop can stop cleanly raises
    `Interrupted` instead of killing the process.)"""
    timer = threading.Timer(budget_s, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    began = time.perf_counter()
    timer.start()
    try:
        with interrupts_raise():
            result = train(
                config,
                run_dir,
                resume=resume,
                force=not resume,
                show_progress=False,
                on_health=on_health,
            )
        stopped = None
    except Interrupted as stop:
        if not (run_dir / CHECKPOINT).is_file():
            raise
        stopped = stop.detail
    finally:
        timer.cancel()
    seconds = time.perf_counter() - began
    if stopped is not None:  # export the checkpoint's trunk: resume with no step left
        saved = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        config = dataclasses.replace(config, max_steps=saved["step"])
        result = train(config, run_dir, resume=True, show_progress=False)
    return {
        "steps": result.steps,
        "images_per_second": result.images_per_second,
        "train_seconds": seconds,
        "stopped_early": stopped,
        "losses_every_10": result.losses[::10],
        "final_loss": result.losses[-1] if result.losses else None,
        "skipped_images": result.skipped_images,
    }


def export_fp16(run_dir: Path, target: Path, config: TrainConfig, steps: int) -> dict[str, Any]:
    """The run's fp32 encoder as fp16 safetensors (the header names the run and the commit)."""
    trunk = load_encoder(run_dir / ENCODER).encoder.backbone
    header = CheckpointHeader(
        training={"config": config.to_dict(), "steps": steps, "data": config.videos},
        git_revision=git_revision(),
    )
    save_encoder(trunk, target, header, dtype=torch.float16)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    return {"path": target.name, "bytes": target.stat().st_size, "sha256": digest}


def random_baseline(folder: Path) -> Path:
    """The seeded random encoder as a checkpoint, so its J&F is measured the same way."""
    path = folder / "random-encoder.safetensors"
    save_encoder(random_encoder().backbone, path, CheckpointHeader())
    return path


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Folder for the record and the encoder.")],
    data: Annotated[Path, typer.Option(help="DAVIS-2016 root (train + val).")] = DAVIS2016,
    smoke: Annotated[bool, typer.Option(help="Tiny sizes on a tiny tree (CPU, ~1 min).")] = False,
    train_budget_s: Annotated[
        float, typer.Option(help="Stop training cleanly after this many seconds.")
    ] = 450.0,
    workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 14,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    run_dir: Annotated[
        Path | None, typer.Option(help="Training run folder (default: a temporary one).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --run-dir (one that stopped early).")
    ] = False,
) -> None:
    """Train the default recipe, export it as fp16, and measure its health and J&F."""
    with user_errors(), tempfile.TemporaryDirectory(prefix="hvc-gpu-train-") as tmp:
        if resume and run_dir is None:
            raise OptionError(
                "resume", resume, "needs --run-dir, the folder of the run to continue"
            )
        torch_device = resolve_device(device)
        record = Record(out / RECORD, **run_environment(torch_device, smoke))
        davis = require_davis(data)
        if smoke:
            davis = smoke_tree(davis, Path(tmp) / "davis")
        config = run_config(davis, smoke, workers, torch_device.type)
        record.update(config=config.to_dict(), recipe="default (official, default layout)")
        health = HealthLog(record, yardstick_probe(davis), config.seed)
        folder = run_dir or Path(tmp) / "run"
        record.update(training=train_within(config, folder, train_budget_s, health, resume))
        steps = record.data["training"]["steps"]
        encoder = out / ENCODER_FP16
        record.update(encoder=export_fp16(folder, encoder, config, steps))
        trunk = load_encoder(encoder).encoder.backbone.to(torch_device)
        record.update(encoder_yardstick=yardstick_health(trunk, health.probe, health.initial))
        evaluation = (
            torch_device.type,
            "fp16" if torch_device.type == "cuda" else "fp32",
            SMOKE_SHORT_SIDE if smoke else None,
        )
        record.update(dev_jf=dev_jf(encoder, davis, *evaluation))
        baseline = random_baseline(Path(tmp))
        record.update(random_encoder_dev_jf=dev_jf(baseline, davis, *evaluation))
        figures = record.data
        print(
            f"{steps} steps, {figures['training']['images_per_second']:.0f} images/s; "
            f"yardstick rank {figures['encoder_yardstick']['effective_rank']:.1f}; "
            f"dev J&F {figures['dev_jf']['jf']:.1f} "
            f"(random encoder {figures['random_encoder_dev_jf']['jf']:.1f}); "
            f"record {out / RECORD}",
            flush=True,
        )


if __name__ == "__main__":
    app()
