"""`hvc-train`: the HVC self-supervised objective on videos and image folders.

Flags override a TOML/YAML config file, which overrides the official defaults; the resolved
config is saved as `config.json` in the run folder. Under torchrun every rank runs this command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hvc_runtime.terminal import console, user_errors
from hvc_train.config import load_config, saved_config
from hvc_train.loop import train

app = typer.Typer(add_completion=False, help="HVC self-supervised pre-training.")


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Run folder (checkpoint, config, encoder, logs).")],
    config: Annotated[Path | None, typer.Option(help="TOML or YAML config file.")] = None,
    videos: Annotated[
        list[str] | None, typer.Option(help="DAVIS/YouTube-VOS root (repeatable).")
    ] = None,
    video_split: Annotated[str | None, typer.Option(help="ImageSets list, e.g. train.")] = None,
    images: Annotated[list[str] | None, typer.Option(help="Image tree root (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT exactly.")] = False,
    force: Annotated[bool, typer.Option(help="Replace a run already in OUT.")] = False,
    batch_size: Annotated[int | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    max_steps: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    image_size: Annotated[int | None, typer.Option()] = None,
    frames_per_video: Annotated[int | None, typer.Option()] = None,
    pos_radius: Annotated[float | None, typer.Option()] = None,
    dynamic_sign: Annotated[
        float | None, typer.Option(help="+1 official, -1 flow consistency.")
    ] = None,
    normalization: Annotated[
        str | None, typer.Option(help="cifar10 (official) or imagenet.")
    ] = None,
    amp: Annotated[str | None, typer.Option(help="auto, none, fp16 or bf16.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int | None, typer.Option()] = None,
    checkpoint_every: Annotated[int | None, typer.Option()] = None,
    log_every: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    val_davis: Annotated[str | None, typer.Option(help="DAVIS-format root for validation.")] = None,
    val_split: Annotated[str | None, typer.Option(help="Validation ImageSets list.")] = None,
    val_every: Annotated[int | None, typer.Option(help="Validate every N steps (0: off).")] = None,
    val_size: Annotated[int | None, typer.Option(help="Validation short side.")] = None,
) -> None:
    """Train into OUT; the inference encoder is written as OUT/encoder.safetensors."""
    overrides = {
        "videos": videos or None,
        "video_split": video_split,
        "images": images or None,
        "batch_size": batch_size,
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "image_size": image_size,
        "frames_per_video": frames_per_video,
        "pos_radius": pos_radius,
        "dynamic_sign": dynamic_sign,
        "normalization": normalization,
        "amp": amp,
        "compile": compile,
        "seed": seed,
        "workers": workers,
        "checkpoint_every": checkpoint_every,
        "log_every": log_every,
        "device": device,
        "val_davis": val_davis,
        "val_split": val_split,
        "val_every": val_every,
        "val_size": val_size,
    }
    with user_errors():
        base = saved_config(out) if resume else None
        result = train(load_config(config, overrides, base), out, resume=resume, force=force)
    if result.encoder is not None:
        console.print(
            f"{result.steps} steps, {result.images_per_second:.1f} images/s, "
            f"{result.skipped_images} unreadable images skipped\n"
            + "".join(
                f"validation J&F at step {s}: {100 * jf:.1f}\n" for s, jf in result.validation
            )
            + f"checkpoint: {result.checkpoint}\nencoder: {result.encoder}",
            highlight=False,
            markup=False,
        )
