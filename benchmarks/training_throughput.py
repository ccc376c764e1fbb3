"""Training speed on this machine, and whether bf16 training follows fp32:
`python -m benchmarks.training_throughput --out benchmarks/runs/cpu-training`.

Three parts, all on the same training frames and seed:
- `data`: the input pipeline alone (decode, crop, resize), images/s per worker count, to see
  whether decoding competes with the network for the cores;
- `speed`: training images/s of each setting (`SETTINGS`), timed after the first step, which
  pays one-off set-up; the first row is what `TrainConfig()` gave before `--amp auto` took bf16
  on CPUs that have it;
- `follow`: fp32 and bf16 (channels-last) trained side by side from the same initialisation for
  a few hundred small steps; the loss per window and the health figures should agree.

Writes `throughput.json` and `throughput.md` into `--out`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from torch.utils.data import DataLoader

from benchmarks.environment import describe
from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.devices import cpu_has_native_bf16
from hvc_train.config import TrainConfig
from hvc_train.data import BatchStream, CropPairDataset
from hvc_train.loop import build_index, train
from hvc_train.recipes import CPU

console = Console(stderr=True)
app = typer.Typer(add_completion=False, help=__doc__)
DAVIS2016 = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"

# name → changes to the official recipe; "before" is the CPU default until bf16 became automatic
SETTINGS: dict[str, dict[str, Any]] = {
    "fp32, 4 workers (before)": {"amp": "none", "workers": 4},
    "fp32, 1 worker": {"amp": "none", "workers": 1},
    "bf16, 1 worker": {"amp": "bf16", "workers": 1},
    "bf16 channels-last, 1 worker": {"amp": "bf16", "channels_last": True, "workers": 1},
    "bf16 channels-last, projector on layer3": {
        "amp": "bf16",
        "channels_last": True,
        "workers": 1,
        "projector_layer": "layer3",
    },
    # the recipe's own values (its `amp = "auto"` is bf16 where the CPU has it natively)
    "--recipe cpu: as above at 192-px crops": {
        key: CPU[key]
        for key in ("amp", "channels_last", "workers", "projector_layer", "image_size")
    },
}
FOLLOWERS: dict[str, dict[str, Any]] = {
    "fp32": {"amp": "none"},
    "bf16 channels-last": {"amp": "bf16", "channels_last": True},
}


def data_rate(config: TrainConfig, batches: int) -> float:
    """Images/s of the input pipeline alone with `config.workers` workers."""
    index = build_index(config)
    stream = BatchStream(index, config.frames_per_video, config.seed, config.batch_size)
    dataset = CropPairDataset(index, config.seed, config.image_size)
    loader = iter(DataLoader(dataset, batch_sampler=stream, num_workers=config.workers))
    next(loader)  # workers start and fill their queues
    began, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += len(next(loader)[0])
    return seen / (time.perf_counter() - began)


def trained(config: TrainConfig) -> Any:
    with tempfile.TemporaryDirectory(prefix="hvc-throughput-") as folder:
        return train(config, Path(folder) / "run", show_progress=False)


def windows(losses: list[float], size: int) -> list[float]:
    return [
        sum(losses[i : i + size]) / len(losses[i : i + size]) for i in range(0, len(losses), size)
    ]


def markdown(record: dict[str, Any]) -> str:
    env = record["environment"]
    where = f"{env['device_name']}, {env['cpu_threads']} threads, git {env['git_revision']}"
    lines = [f"Measured on {where}.", "", "**Input pipeline alone**", ""]
    lines += ["| workers | images/s |", "|---|---|"]
    lines += [f"| {w} | {r:.1f} |" for w, r in record["data"].items()]
    speed = record["speed"]
    base = next(iter(speed.values()))
    lines += ["", f"**Training** ({record['scale']})", "", "| setting | images/s | vs first row |"]
    lines += ["|---|---|---|"]
    lines += [f"| {name} | {rate:.2f} | {rate / base:.2f}× |" for name, rate in speed.items()]
    follow = record["follow"]
    if follow:
        names = list(follow)
        lines += ["", f"**bf16 follows fp32** ({record['follow_scale']})", ""]
        lines += ["| steps | " + " | ".join(f"{n} loss" for n in names) + " |"]
        lines += ["|---" * (len(names) + 1) + "|"]
        size = record["follow_window"]
        for k, values in enumerate(zip(*(follow[n]["loss_windows"] for n in names), strict=True)):
            cells = " | ".join(f"{v:.3f}" for v in values)
            lines.append(f"| {k * size + 1}–{(k + 1) * size} | {cells} |")
        lines += ["", "| step | " + " | ".join(f"{n} eff. rank / top PC" for n in names) + " |"]
        lines += ["|---" * (len(names) + 1) + "|"]
        for points in zip(*(follow[n]["health"] for n in names), strict=True):
            cells = " | ".join(
                f"{p['effective_rank']:.2f} / {p['top_component']:.3f}" for p in points
            )
            lines.append(f"| {points[0]['step']} | {cells} |")
    return "\n".join(lines) + "\n"


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Folder for throughput.json and .md.")] = Path(
        "throughput-out"
    ),
    videos: Annotated[Path, typer.Option(help="DAVIS-format training root.")] = DAVIS2016,
    video_split: Annotated[str, typer.Option(help="Training ImageSets list.")] = "train",
    image_size: Annotated[int, typer.Option(help="Crop size of the speed part.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Batch of the speed part.")] = 32,
    steps: Annotated[int, typer.Option(help="Timed steps per setting.")] = 8,
    data_batches: Annotated[int, typer.Option(help="Batches timed per worker count.")] = 8,
    follow_steps: Annotated[int, typer.Option(help="Steps of the fp32/bf16 part (0: off).")] = 200,
    follow_size: Annotated[int, typer.Option(help="Crop size of the fp32/bf16 part.")] = 64,
    follow_batch: Annotated[int, typer.Option(help="Batch of the fp32/bf16 part.")] = 16,
    threads: Annotated[int, typer.Option(help="torch threads (0: PyTorch's choice).")] = 0,
) -> None:
    """Time the input pipeline and each training setting; train fp32 and bf16 side by side."""
    with user_errors():
        if threads:
            torch.set_num_threads(threads)
        base = TrainConfig(
            videos=[str(videos)],
            video_split=video_split,
            image_size=image_size,
            batch_size=batch_size,
            device="cpu",
            health_every=0,
            log_every=steps + 1,
            checkpoint_every=steps + 1,
            max_steps=steps + 1,
        )
        record: dict[str, Any] = {
            "environment": describe(torch.device("cpu")),
            "native_bf16": cpu_has_native_bf16(),
            "scale": f"{image_size}-px crops, batch {batch_size}, {steps} steps after the first",
            "data": {},
            "speed": {},
            "follow": {},
        }
        for workers in (0, 1, 2):
            config = TrainConfig(**{**base.to_dict(), "workers": workers})
            record["data"][workers] = data_rate(config, data_batches)
            console.print(f"data, {workers} workers: {record['data'][workers]:.1f} images/s")
        for name, changes in SETTINGS.items():
            result = trained(TrainConfig(**{**base.to_dict(), **changes}))
            record["speed"][name] = result.images_per_second
            console.print(f"{name}: {result.images_per_second:.2f} images/s")
        window = max(1, follow_steps // 10)
        record["follow_scale"] = (
            f"{follow_size}-px crops, batch {follow_batch}, {follow_steps} steps, mean loss per "
            f"{window} steps"
        )
        record["follow_window"] = window
        for name, changes in FOLLOWERS.items() if follow_steps else ():
            config = TrainConfig(
                **{
                    **base.to_dict(),
                    **changes,
                    "image_size": follow_size,
                    "batch_size": follow_batch,
                    "max_steps": follow_steps,
                    "checkpoint_every": follow_steps,
                    "log_every": window,
                    "health_every": window * 5,
                    "workers": 1,
                }
            )
            result = trained(config)
            record["follow"][name] = {
                "loss_windows": windows(result.losses, window),
                "health": [{"step": s, **f.scalars()} for s, f in result.health],
            }
            console.print(f"follow {name}: done")
        out.mkdir(parents=True, exist_ok=True)
        report = markdown(record)
        for name, text in (
            ("throughput.json", json.dumps(record, indent=1) + "\n"),
            ("throughput.md", report),
        ):
            with atomic_path(out / name) as tmp:
                tmp.write_text(text)
        print(report)


if __name__ == "__main__":
    app()
