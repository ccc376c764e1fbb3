"""A training snapshot made into a shippable encoder: fp16 safetensors whose header is its model
card. `python -m hvc_train.release SNAPSHOT --out FILE --dev-results DIR --random-results DIR ...`

The card says what the encoder is (recipe, data named by what it is, steps, training time and
machine, code revision), how good (dev J&F per video beside the random encoder's, from
`hvc-eval` result folders) and how healthy (`hvc_train.health` figures on one frame beside the
random encoder's). No path of the machine that trained it is kept: the run's config names its
data by absolute paths, and those are dropped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.encoder.checkpoints import (
    CheckpointHeader,
    load_encoder,
    random_encoder,
    read_header,
    save_encoder,
)
from hvc_runtime.encoder.network import IMAGENET_MEAN, IMAGENET_STD, StrideEightResNet
from hvc_runtime.io.frames import read_rgb_image
from hvc_runtime.utils.errors import HvcError
from hvc_train.health import measure

PATH_KEYS = ("videos", "images", "val_davis")  # config values that are paths of the trainer
app = typer.Typer(add_completion=False, help=__doc__)


def dev_scores(folder: Path, split: str = "val") -> dict[str, float]:
    """J&F (0-100) per sequence and `mean` from an `hvc-eval` result folder's CSV files."""
    path = folder / f"per-sequence_results-{split}.csv"
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise HvcError(f"{path}: cannot read hvc-eval scores ({exc.strerror})") from exc
    scores: dict[str, list[float]] = {}
    for row in rows:
        sequence = row["Sequence"].rsplit("_", 1)[0]
        jf = 100 * (float(row["J-Mean"]) + float(row["F-Mean"])) / 2
        scores.setdefault(sequence, []).append(jf)
    if not scores:
        raise HvcError(f"{path}: no sequence scored")
    per_video = {seq: round(sum(v) / len(v), 1) for seq, v in scores.items()}
    # the DAVIS mean is over objects, which is over videos for single-object results
    objects = [jf for values in scores.values() for jf in values]
    return {**per_video, "mean": round(sum(objects) / len(objects), 1)}


def health(trunk: StrideEightResNet, frame: Path) -> dict[str, float]:
    """The health figures of `trunk` on one frame (ImageNet statistics, as the runtime)."""
    rgb = torch.from_numpy(read_rgb_image(frame)).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        figures = measure(trunk, (rgb - mean) / std)
    return {
        "effective_rank": round(figures.effective_rank, 2),
        "top_component": round(figures.top_component, 3),
        "mean_cosine": round(figures.mean_cosine, 3),
        "max_dc_share": round(max(figures.dc_share.values()), 4),
    }


def model_card(
    snapshot: Path,
    *,
    name: str,
    data: str,
    train_hours: float,
    machine: str,
    probe: Path,
    dev_results: Path | None = None,
    random_results: Path | None = None,
) -> dict[str, Any]:
    """The card of the encoder in `snapshot` (a run's `encoders/step-*.safetensors`).

    The dev scores are those of the encoder as it ships (fp16): release once without them,
    evaluate the released file with `hvc-eval --run`, then release again with them."""
    source = read_header(snapshot)
    config = dict(source.training.get("config", {}))
    if not config:
        raise HvcError(f"{snapshot}: not a training snapshot (its header names no training run)")
    for key in PATH_KEYS:
        config.pop(key, None)
    card = {
        "name": name,
        "data": data,
        "steps": source.training.get("steps"),
        "train_hours": train_hours,
        "machine": machine,
        "code_revision": source.git_revision,
        "config": config,
        "health": health(load_encoder(snapshot).encoder.backbone, probe),
        "random_encoder_health": health(random_encoder().backbone, probe),
        "health_probe": f"{probe.parent.name}/{probe.name}",
    }
    if dev_results is not None:
        card["dev_jf"] = dev_scores(dev_results)
    if random_results is not None:
        card["random_encoder_dev_jf"] = dev_scores(random_results)
    return card


def release(snapshot: Path, out: Path, card: dict[str, Any]) -> Path:
    """Write the encoder of `snapshot` to `out` in fp16 with `card` as its training header."""
    trunk = load_encoder(snapshot).encoder.backbone
    header = CheckpointHeader(training=card, git_revision=card["code_revision"])
    save_encoder(trunk, out, header, dtype=torch.float16)
    return out


def _scores_line(card: dict[str, Any]) -> str:
    line = f", dev J&F {card['dev_jf']['mean']}" if "dev_jf" in card else ""
    if "random_encoder_dev_jf" in card:
        line += f" (random encoder {card['random_encoder_dev_jf']['mean']})"
    return line


@app.command()
def main(
    snapshot: Annotated[Path, typer.Argument(help="A run's encoders/step-*.safetensors.")],
    out: Annotated[Path, typer.Option(help="Where the shippable encoder goes.")],
    name: Annotated[str, typer.Option(help="The model's name.")],
    data: Annotated[str, typer.Option(help="The training data, named by what it is.")],
    train_hours: Annotated[float, typer.Option(help="Training time, in hours of MACHINE.")],
    machine: Annotated[str, typer.Option(help="What it was trained on.")],
    probe: Annotated[Path, typer.Option(help="The frame the health figures are measured on.")],
    dev_results: Annotated[
        Path | None, typer.Option(help="hvc-eval --run results of the released file.")
    ] = None,
    random_results: Annotated[
        Path | None, typer.Option(help="hvc-eval --run results of the random encoder.")
    ] = None,
) -> None:
    """Write SNAPSHOT as an fp16 encoder whose header is its model card."""
    with user_errors():
        card = model_card(
            snapshot,
            name=name,
            data=data,
            train_hours=train_hours,
            machine=machine,
            probe=probe,
            dev_results=dev_results,
            random_results=random_results,
        )
        release(snapshot, out, card)
    typer.echo(f"{out}: {name}{_scores_line(card)}, {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    app()
