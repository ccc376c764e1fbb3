"""What separates the collapsed GPU run from the official code's: three trainings side by side,
in one time-budgeted command for a CUDA machine.

On the same frames and budget (the 30 DAVIS-2016 train videos each listed 20 times, 164 steps of
batch 128 at 256 px an epoch, the EMA schedule of 14 epochs) it trains for `--epochs` epochs:

- `hvc-train` in the default memory layout (the default recipe, the official one);
- `hvc-train` in channels-last (the collapsed run's layout, nothing else changed);
- the official code (github.com/Anonymous-SSVOS/HVC, `train_vos.py` unmodified, run with
  `--epochs 14` and stopped after epoch `--epochs`; `setproctitle` and its visualisation module
  `core.visualize`, which imports visdom, wandb, sklearn, are replaced by stubs at run time).

Each of our runs stops cleanly after `--run-budget-s` seconds. The health figures
(`hvc_train.health`) of each online trunk on the yardstick (blackswan frame 0 at 854×480) at
every epoch end go side by side, with each final trunk's clip IoU. Everything is written to
`OUT/cause.json` as it finishes, the table to `OUT/cause.md`, the official log to
`OUT/official.log`.

    python -m benchmarks.gpu.cause --data DAVIS2016 --official path/to/HVC --out results

About 6 minutes on an H100 (an estimate). `--smoke` runs the same code on a tiny tree on the CPU;
without an official checkout (`--official` or `$HVC_OFFICIAL`) the official part is skipped and
the record says why.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from benchmarks.gpu.common import (
    DAVIS2016,
    SMOKE_SHORT_SIDE,
    Record,
    require_davis,
    run_environment,
    smoke_tree,
    split_names,
    yardstick_health,
    yardstick_probe,
)
from benchmarks.gpu.train import HealthLog, run_config, train_within
from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.encoder.network import StrideEightResNet
from hvc_runtime.io.frames import frame_files
from hvc_runtime.utils.devices import resolve_device
from hvc_runtime.utils.errors import HvcError
from hvc_runtime.utils.interrupts import interrupts_raise
from hvc_train.data import BatchStream, index_videos
from hvc_train.rundir import ENCODER
from hvc_train.validation import clip_iou

app = typer.Typer(add_completion=False, help=__doc__)
RECORD = "cause.json"
TABLE = "cause.md"
LAYOUTS = {"default-layout": False, "channels-last": True}
# Runs the official train_vos.py as its own __main__, with the two modules it imports but does
# not need for training replaced: setproctitle (a process title) and core.visualize (debug
# images; it imports visdom, wandb, sklearn, cv2, which the GPU image does not all have).
OFFICIAL_BOOT = """
import runpy, sys, types
title = types.ModuleType("setproctitle"); title.setproctitle = lambda name: None
images = types.ModuleType("core.visualize"); images.save_img = lambda *a, **k: None
sys.modules.update({"setproctitle": title, "core.visualize": images})
sys.argv = ["train_vos.py", *sys.argv[1:]]
runpy.run_path("train_vos.py", run_name="__main__")
"""


def official_tree(davis: Path, target: Path, repeat: int) -> Path:
    """The official loader's layout for the DAVIS train videos: `ytvos.csv` (name, first frame,
    count) with each video listed `repeat` times, and frames linked as 00000.jpg, 00001.jpg, …
    (the DAVIS-2016 train folder keeps only even frames; the loader wants consecutive names)."""
    rows = []
    for name in split_names(davis, "train"):
        frames = frame_files(davis / "JPEGImages" / "480p" / name)
        folder = target / "JPEGImages" / name
        folder.mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(frames):
            (folder / f"{k:05d}.jpg").symlink_to(frame.resolve())
        rows.append(f"{name},0,{len(frames)}\n")
    (target / "ytvos.csv").write_text("".join(rows) * repeat)
    return target


def official_trunk(checkpoint: Path, scratch: Path) -> StrideEightResNet:
    """The online trunk of an official `hvc_epoch_N.pth` (model, optimizer, epoch, args), read
    without unpickling anything but its argparse.Namespace, through the runtime's loader."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    plain = scratch / "online.pth"
    torch.save(saved["model"], plain)  # a plain state dict, as the official releases are
    return load_encoder(plain).encoder.backbone


def run_official(
    checkout: Path,
    data: Path,
    work: Path,
    epochs: int,
    total_epochs: int,
    options: dict[str, Any],
    log: Path,
) -> list[Path]:
    """Run the official training until its epoch-`epochs` checkpoint exists (the schedule
    spans `total_epochs`); its output goes to `log`. Returns the epoch checkpoints."""
    args = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    command = [sys.executable, "-c", OFFICIAL_BOOT, f"--data-path={data}"]
    command += [f"--output-dir={work}", f"--epochs={total_epochs}", *args]
    stop_mark = f"Epoch: [{epochs + 1}]"  # printed after the first step of the next epoch
    # its own process group, so its DataLoader workers stop with it; a SIGTERM to this process
    # (a `timeout` around the command) raises here, so the `finally` stops it and the official
    # run never outlives the command
    with log.open("w") as sink, interrupts_raise():
        process = subprocess.Popen(
            command,
            cwd=checkout,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                if line.startswith(stop_mark):
                    break
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    done = [work / f"hvc_epoch_{e}.pth" for e in range(1, epochs + 1)]
    missing = [p.name for p in done if not p.is_file()]
    if missing:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise HvcError(f"official training stopped before {missing[0]} (last line: {tail[0]})")
    return done


def official_options(config: Any) -> dict[str, Any]:
    """The official flags that match a `TrainConfig` (its other values are the official ones)."""
    return {
        "batch_size": config.batch_size,
        "img_size": config.image_size,
        "workers": config.workers,
        "device": config.device,
    }


def table(record: dict[str, Any], names: list[str]) -> str:
    """Yardstick rank and layer-1 DC share per epoch end, the runs side by side."""
    by_run = {
        name: {h["step"]: h["yardstick"] for h in record.get(f"{name}/health", [])}
        for name in names
    }
    steps = sorted({step for points in by_run.values() for step in points})
    lines = ["| step | " + " | ".join(f"{n} rank | {n} DC l1" for n in names) + " |"]
    lines.append("|---|" + "---|---|" * len(names))
    for step in steps:
        cells = []
        for name in names:
            point = by_run[name].get(step)
            cells += (
                [f"{point['effective_rank']:.1f}", f"{point['dc_share/layer1']:.4f}"]
                if point
                else ["", ""]
            )
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    scores = [
        f"{n} {100 * record[f'{n}/clip_iou']:.1f}" for n in names if f"{n}/clip_iou" in record
    ]
    return "\n".join(lines) + "\nclip IoU: " + ", ".join(scores) + "\n"


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Folder for the record, table and official log.")],
    data: Annotated[Path, typer.Option(help="DAVIS-2016 root (train + val).")] = DAVIS2016,
    official: Annotated[
        Path | None,
        typer.Option(help="Official HVC checkout (default: $HVC_OFFICIAL; none: skipped)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs each run trains.")] = 3,
    run_budget_s: Annotated[
        float, typer.Option(help="Stop each of our runs cleanly after this many seconds.")
    ] = 170.0,
    smoke: Annotated[bool, typer.Option(help="Tiny sizes on a tiny tree (CPU).")] = False,
    workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 14,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Default layout vs channels-last vs the official code, health side by side."""
    with user_errors(), tempfile.TemporaryDirectory(prefix="hvc-gpu-cause-") as tmp:
        scratch = Path(tmp)
        torch_device = resolve_device(device)
        record = Record(out / RECORD, **run_environment(torch_device, smoke))
        davis = require_davis(data)
        if smoke:
            davis = smoke_tree(davis, scratch / "davis")
        base = run_config(davis, smoke, workers, torch_device.type)
        per_epoch = BatchStream(
            index_videos(davis, "train"),
            base.frames_per_video,
            base.seed,
            base.batch_size,
            base.repeat,
        ).steps_per_epoch()
        record.update(epochs=epochs, steps_per_epoch=per_epoch, schedule_epochs=base.epochs)
        probe = yardstick_probe(davis)
        val_size = SMOKE_SHORT_SIDE if smoke else 240  # the clip IoU yardstick's 240
        names = []
        for name, channels_last in LAYOUTS.items():
            config = run_config(
                davis,
                smoke,
                workers,
                torch_device.type,
                channels_last=channels_last,
                max_steps=epochs * per_epoch,
                health_every=per_epoch,
                checkpoint_every=per_epoch,
            )
            names.append(name)
            run_dir = scratch / name
            health = HealthLog(record, probe, config.seed, key=f"{name}/health")
            record.update(
                **{f"{name}/training": train_within(config, run_dir, run_budget_s, health)}
            )
            trunk = load_encoder(run_dir / ENCODER).encoder.backbone.to(torch_device)
            score = clip_iou(trunk, davis, "val", val_size, torch_device)
            record.update(**{f"{name}/clip_iou": score})
            shutil.rmtree(run_dir)
        checkout = official or (
            Path(os.environ["HVC_OFFICIAL"]) if "HVC_OFFICIAL" in os.environ else None
        )
        if checkout is None or not (checkout / "train_vos.py").is_file():
            reason = (
                f"no official checkout (train_vos.py) at {checkout}"
                if checkout
                else "no official checkout given (--official or $HVC_OFFICIAL)"
            )
            record.update(official_skipped=reason)
            print(f"official part skipped: {reason}", flush=True)
        else:
            names.append("official")
            began = time.perf_counter()
            tree = official_tree(davis, scratch / "official-data", base.repeat)
            try:
                checkpoints = run_official(
                    checkout.resolve(),
                    tree,
                    scratch / "official-run",
                    epochs,
                    base.epochs,
                    official_options(base),
                    out / "official.log",
                )
            except HvcError as error:
                record.update(official_failed=str(error))
                raise
            record.update(
                **{
                    "official/training": {
                        "seconds": time.perf_counter() - began,
                        "checkpoints": [p.name for p in checkpoints],
                    }
                }
            )
            for k, checkpoint in enumerate(checkpoints, 1):
                trunk = official_trunk(checkpoint, scratch).to(torch_device)
                point = {"step": k * per_epoch, "yardstick": yardstick_health(trunk, probe)}
                record.append("official/health", point)
            record.update(
                **{"official/clip_iou": clip_iou(trunk, davis, "val", val_size, torch_device)}
            )
        report = table(record.data, names)
        (out / TABLE).write_text(report)
        print(report, flush=True)


if __name__ == "__main__":
    app()
