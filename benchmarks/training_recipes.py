"""Training recipes compared on representation health: `python -m benchmarks.training_recipes`.

Each recipe is the official one (the default) with a few keys changed. It trains for the same budget on the
same data, measures the health figures (`hvc_train.health`) every few steps and the quick
validation score (clip IoU) at the end, and one table compares them. The defaults are a CPU
scale (128-pixel crops, batch 16, tens of steps); the full scale on a GPU is

    python -m benchmarks.training_recipes --device cuda --image-size 256 --batch-size 128 \\
        --steps 2296 --repeat 20 --workers 14 --every 100 --out recipes-gpu

Writes `recipes.json` and `recipes.md` into `--out`, beside one run folder per recipe.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console

from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.encoder.checkpoints import random_encoder
from hvc_runtime.utils.devices import resolve_device
from hvc_runtime.utils.errors import HvcError
from hvc_train.config import TrainConfig
from hvc_train.health import STAGES
from hvc_train.loop import train
from hvc_train.model import HVCNetwork
from hvc_train.recipes import recipe_values
from hvc_train.validation import clip_iou

console = Console(stderr=True)
app = typer.Typer(add_completion=False, help=__doc__)
DAVIS2016 = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"


def candidates(steps: int) -> dict[str, dict[str, Any]]:
    """Recipe name → its changes to the official recipe (a warm-up spans a fifth of the budget)."""
    warmup = max(1, steps // 5)
    return {
        "official": {},
        "channels-last": {"channels_last": True},  # as the collapsed GPU run
        "cudnn-nondeterministic": {"deterministic": False},  # as the collapsed GPU run
        "seed-7": {"seed": 7},
        "imagenet-norm": {"normalization": "imagenet"},
        "colour-jitter": {"color_jitter": 0.4, "grayscale": 0.2},
        "min-crop-0.2": {"min_crop": 0.2},
        "warmup": {"warmup_steps": warmup},
        "lr-3e-4": {"lr": 3e-4},
        "fixed-filter-means": {"fixed_filter_means": True},
        # the default from 1ad888b to this change, chosen on 100 CPU steps only
        "imagenet-crop-0.2-lr-3e-4": {"normalization": "imagenet", "min_crop": 0.2, "lr": 3e-4},
    }


def reference_scores(val_davis: Path, size: int, device: torch.device) -> dict[str, float]:
    """The clip IoU of the untrained trunk (training init, seed 42) and of the random encoder."""
    torch.manual_seed(42)
    init = HVCNetwork().online_encoder.to(device)
    randomly = random_encoder().backbone.to(device)
    return {
        name: clip_iou(trunk, val_davis, "val", size, device)
        for name, trunk in (("init (seed 42)", init), ("random encoder", randomly))
    }


def _row(name: str, step: int, figures: dict[str, float], score: float | None) -> str:
    cells = [
        name,
        str(step),
        f"{figures['effective_rank']:.2f}",
        f"{figures['top_component']:.3f}",
        f"{figures['mean_cosine']:.3f}",
        *(f"{figures[f'dc_share/{s}']:.3f}" for s in STAGES),
        *(f"{figures[f'update_dc_share/{s}']:.3f}" for s in STAGES),
        "" if score is None else f"{100 * score:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(runs: list[dict[str, Any]], references: dict[str, float]) -> str:
    head = (
        "| recipe | step | eff. rank | top PC | mean cos | DC l1 | DC l2 | DC l3 "
        "| update DC l1 | update DC l2 | update DC l3 | clip IoU |"
    )
    lines = [head, "|" + "---|" * 12]
    for run in runs:
        last = run["health"][-1]["step"]
        for point in run["health"]:
            score = run["clip_iou"] if point["step"] == last else None
            lines.append(_row(run["recipe"], point["step"], point["figures"], score))
    lines += ["", "| untrained reference | clip IoU |", "|---|---|"]
    lines += [f"| {name} | {100 * score:.1f} |" for name, score in references.items()]
    return "\n".join(lines) + "\n"


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Folder for the runs and the result table.")] = Path(
        "recipes-out"
    ),
    videos: Annotated[Path, typer.Option(help="DAVIS-format training root.")] = DAVIS2016,
    video_split: Annotated[str, typer.Option(help="Training ImageSets list.")] = "train",
    val_davis: Annotated[Path, typer.Option(help="DAVIS root with a val list.")] = DAVIS2016,
    recipes: Annotated[
        str | None, typer.Option(help="Comma-separated recipe names (default: all).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps per recipe.")] = 20,
    every: Annotated[int, typer.Option(help="Health figures every N steps.")] = 5,
    image_size: Annotated[int, typer.Option()] = 128,
    batch_size: Annotated[int, typer.Option()] = 16,
    repeat: Annotated[int, typer.Option(help="Passes over the videos per epoch.")] = 1,
    workers: Annotated[int, typer.Option()] = 2,
    val_size: Annotated[int, typer.Option(help="Short side for the clip IoU.")] = 240,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Train each recipe for the same budget and print one table of health figures."""
    with user_errors():
        table = candidates(steps)
        chosen = recipes.split(",") if recipes else list(table)
        unknown = [name for name in chosen if name not in table]
        if unknown:
            raise HvcError(f"--recipes: unknown {unknown}; choose from {list(table)}")
        references = reference_scores(val_davis, val_size, resolve_device(device))
        runs = []
        for name in chosen:
            config = TrainConfig(
                **{**recipe_values("official"), **table[name]},
                videos=[str(videos)],
                video_split=video_split,
                repeat=repeat,
                image_size=image_size,
                batch_size=batch_size,
                max_steps=steps,
                health_every=every,
                log_every=every,
                checkpoint_every=steps,
                workers=workers,
                device=device,
                val_davis=str(val_davis),
                val_size=val_size,
            )
            began = time.perf_counter()
            result = train(config, out / name, force=True, show_progress=False)
            runs.append(
                {
                    "recipe": name,
                    "changes": table[name],
                    "seconds": time.perf_counter() - began,
                    "losses": result.losses,
                    "clip_iou": result.validation[-1][1],
                    "health": [
                        {"step": step, "figures": figures.scalars()}
                        for step, figures in result.health
                    ],
                }
            )
            console.print(f"{name}: {runs[-1]['seconds']:.0f} s", highlight=False)
        report = markdown(runs, references)
        (out / "recipes.md").write_text(report)
        (out / "recipes.json").write_text(
            json.dumps({"runs": runs, "references": references}, indent=1) + "\n"
        )
        print(report)


if __name__ == "__main__":
    app()
