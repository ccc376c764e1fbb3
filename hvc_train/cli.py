"""`hvc-train`: the HVC self-supervised objective on videos and image folders.

Flags override a TOML/YAML config file, which overrides the recipe's defaults; the resolved
config is saved as `config.json` in the run folder. Under torchrun every rank runs this command.
"""

from __future__ import annotations

import inspect
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from hvc_runtime.cli.terminal import HELP_LAYOUT, console, user_errors
from hvc_runtime.utils.interrupts import Interrupted
from hvc_train.config import RECIPE_KEY, TrainConfig, load_config, saved_config
from hvc_train.loop import train
from hvc_train.recipes import RECIPES
from hvc_train.rundir import CHECKPOINT, require_resumable

app = typer.Typer(add_completion=False, help="HVC self-supervised pre-training.", **HELP_LAYOUT)
CONFIG_KEYS = {*TrainConfig.__dataclass_fields__, RECIPE_KEY}


def resume_command(out: Path) -> str:
    """The command that continues the run in `out` (the same torchrun launch under torchrun)."""
    tail = f"--out {shlex.quote(str(out))} --resume"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        processes = os.environ.get("LOCAL_WORLD_SIZE", "N")
        return f"torchrun --nproc-per-node {processes} -m hvc_train {tail}"
    return f"hvc-train {tail}"


def _default_recipe_defaults(command: Callable[..., Any]) -> Callable[..., Any]:
    """The config options default to the default recipe's values (`TrainConfig()`), so --help
    shows each as a value; the command takes only those given on the command line (see
    `given_flags`), since a config file or `--recipe` may set the others."""
    defaults = TrainConfig()
    signature = inspect.signature(command, eval_str=True)
    parameters = [
        p.replace(default=getattr(defaults, p.name))
        if p.name in TrainConfig.__dataclass_fields__
        else p
        for p in signature.parameters.values()
    ]
    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return command


def given_flags(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The config keys among `values` that were given on the command line (typer's click
    reports each parameter's source as a `ParameterSource` member)."""
    sources = {key: ctx.get_parameter_source(key) for key in values if key in CONFIG_KEYS}
    return {
        key: values[key]
        for key, source in sources.items()
        if source is not None and source.name == "COMMANDLINE"
    }


@app.command()
@_default_recipe_defaults
def main(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Run folder (checkpoint, config, encoder, logs).")],
    config: Annotated[Path | None, typer.Option(help="TOML or YAML config file.")] = None,
    recipe: Annotated[
        str | None,
        typer.Option(help=f"Defaults to start from: {', '.join(RECIPES)} (shown: default)."),
    ] = None,
    videos: Annotated[
        list[str] | None,
        typer.Option(metavar="ROOT", help="DAVIS/YouTube-VOS root (repeatable)."),
    ] = None,
    video_split: Annotated[
        str | None, typer.Option(help="ImageSets list, e.g. train (default: every video).")
    ] = None,
    images: Annotated[
        list[str] | None,
        typer.Option(metavar="ROOT", help="Tree of JPEG/PNG images (repeatable)."),
    ] = None,
    repeat: Annotated[
        int | None, typer.Option(help="Passes over the data per epoch (small datasets).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT exactly.")] = False,
    force: Annotated[bool, typer.Option(help="Replace a run already in OUT.")] = False,
    batch_size: Annotated[int | None, typer.Option(help="Crop pairs per step.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs; the EMA schedule spans them.")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after N steps (default: after the epochs).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (constant).")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Linear lr warm-up steps.")] = None,
    momentum: Annotated[float | None, typer.Option(help="Initial EMA momentum.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Crop side in pixels.")] = None,
    frames_per_video: Annotated[
        int | None, typer.Option(help="Frames sampled per video per epoch, at most.")
    ] = None,
    min_crop: Annotated[float | None, typer.Option(help="Smallest crop area share.")] = None,
    max_crop: Annotated[float | None, typer.Option(help="Largest crop area share.")] = None,
    color_jitter: Annotated[
        float | None,
        typer.Option(help="Colour jitter strength: brightness, contrast, saturation (0: off)."),
    ] = None,
    grayscale: Annotated[float | None, typer.Option(help="Probability of a grey view.")] = None,
    fixed_filter_means: Annotated[
        bool | None, typer.Option(help="Hold each trunk filter's mean at its initial value.")
    ] = None,
    projector_layer: Annotated[
        str | None,
        typer.Option(help="Trunk output the loss trains: layer4 (official) or layer3 (cheaper)."),
    ] = None,
    pos_radius: Annotated[
        float | None, typer.Option(help="Positive pairs: closer than this many cell diagonals.")
    ] = None,
    dynamic_sign: Annotated[
        float | None, typer.Option(help="+1 official, -1 flow consistency.")
    ] = None,
    normalization: Annotated[
        str | None, typer.Option(help="Training input statistics: cifar10 (official) or imagenet.")
    ] = None,
    amp: Annotated[str | None, typer.Option(help="auto, none, fp16 or bf16.")] = None,
    compile: Annotated[bool | None, typer.Option(help="torch.compile the model.")] = None,
    channels_last: Annotated[
        bool | None, typer.Option(help="Channels-last memory layout (the official code: off).")
    ] = None,
    deterministic: Annotated[
        bool | None, typer.Option(help="Deterministic cuDNN algorithms.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of weights and sampling.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Write checkpoint.pt every N steps.")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option(help="Progress line and TensorBoard scalars every N steps.")
    ] = None,
    health_every: Annotated[
        int | None, typer.Option(help="Health figures every N steps (0: off).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    val_davis: Annotated[
        str | None, typer.Option(metavar="ROOT", help="DAVIS-format root for validation.")
    ] = None,
    val_split: Annotated[str | None, typer.Option(help="Validation ImageSets list.")] = None,
    val_every: Annotated[
        int | None, typer.Option(help="Validate every N steps (0: only at the end).")
    ] = None,
    val_metric: Annotated[
        str | None, typer.Option(help="proxy (quick clip IoU) or jf (full DAVIS J&F).")
    ] = None,
    val_size: Annotated[int | None, typer.Option(help="Validation short side.")] = None,
) -> None:
    """Train into OUT; the inference encoder is written as OUT/encoder.safetensors.

    Flags override --config, which overrides the recipe; the defaults shown are the default
    recipe's. Under torchrun every process runs this command.
    """
    overrides = given_flags(ctx, locals())
    with user_errors():
        if resume:
            require_resumable(out)
        base = saved_config(out) if resume else None
        resolved = load_config(config, overrides, base)
        try:
            result = train(resolved, out, resume=resume, force=force)
        except Interrupted as stop:
            if not (out / CHECKPOINT).is_file():
                raise
            detail = f"{stop.detail or 'stopped'}; continue with: {resume_command(out)}"
            raise stop.with_detail(detail) from None
    if result.encoder is not None:
        metric = "J&F" if resolved.val_metric == "jf" else "clip IoU"
        console.print(
            f"{result.steps} steps, {result.images_per_second:.1f} images/s, "
            f"{result.skipped_images} unreadable images skipped\n"
            + "".join(
                f"validation {metric} at step {s}: {100 * v:.1f}\n" for s, v in result.validation
            )
            + f"checkpoint: {result.checkpoint}\nencoder: {result.encoder}",
            highlight=False,
            markup=False,
        )
