"""The picture at the top of the README: a DAVIS clip segmented from its first-frame mask.

    python docs/figure.py                                   # the default encoder, ../shared/data
    python docs/figure.py --davis DAVIS --checkpoint hvc.safetensors

Segments the first --frames frames of --sequence at short side --size on the CPU, and writes
every --every-th frame's overlay (the DAVIS palette over the frame, --width pixels wide) as a
looping GIF, docs/images/<sequence>.gif, beside <sequence>.json: which encoder and settings made
it, the commit, and the mask IoU of each shown frame against the DAVIS ground truth.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from hvc_runtime import Segmenter, open_frames, read_mask
from hvc_runtime.cli.terminal import HELP_LAYOUT, user_errors
from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.io.writers import overlay
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError
from hvc_runtime.utils.provenance import git_revision

DOCS = Path(__file__).resolve().parent
DAVIS2016 = DOCS.parents[1] / "shared" / "data" / "davis2016"  # beside the checkout
COLOURS = 128  # per frame: a 320-pixel-wide GIF of 8 frames stays under 300 KB
app = typer.Typer(add_completion=False, **HELP_LAYOUT)


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the objects (any id) of two masks; 1 when both are empty."""
    ours, theirs = mask > 0, truth > 0
    union = np.logical_or(ours, theirs).sum()
    return float(np.logical_and(ours, theirs).sum() / union) if union else 1.0


def gif_frame(rgb: np.ndarray, ids: np.ndarray, width: int) -> Image.Image:
    """The overlay, scaled to `width`, on its own palette of `COLOURS` colours."""
    picture = Image.fromarray(overlay(rgb, ids))
    height = round(picture.height * width / picture.width)
    picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    return picture.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT)


@app.command()
def main(
    davis: Annotated[Path, typer.Option(help="DAVIS-format dataset root.")] = DAVIS2016,
    sequence: Annotated[str, typer.Option(help="Sequence to segment.")] = "blackswan",
    checkpoint: Annotated[
        Path | None, typer.Option(help="Encoder (default: the default encoder).")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames to segment, from the first.")] = 40,
    every: Annotated[int, typer.Option(help="Show every N-th segmented frame.")] = 5,
    size: Annotated[int, typer.Option(help="Short side the frames are encoded at.")] = 240,
    width: Annotated[int, typer.Option(help="Width of the picture in pixels.")] = 320,
    out: Annotated[
        Path | None, typer.Option(help="The GIF (default: docs/images/<sequence>.gif).")
    ] = None,
) -> None:
    """Segment a DAVIS clip from its first-frame mask and write the overlay as a GIF."""
    with user_errors():
        if min(frames, every, width) < 1:
            raise HvcError("--frames, --every and --width must be at least 1")
        dataset = DavisDataset(davis)
        truth = dataset.annotation_files(sequence)
        out = out or DOCS / "images" / f"{sequence}.gif"
        segmenter = Segmenter.from_checkpoint(checkpoint, device="cpu", short_side=size)
        source = open_frames(dataset.frames_dir(sequence))
        clip = list(itertools.islice(source, frames))
        shown, scores = [], {}
        for frame, ids in zip(clip, segmenter.track(clip, read_mask(truth[0])), strict=True):
            if frame.index % every == 0:
                shown.append(gif_frame(frame.host_rgb(), ids, width))
                if frame.index and frame.index < len(truth):
                    scores[frame.name] = round(iou(ids, read_mask(truth[frame.index])), 4)
        with atomic_path(out) as tmp:
            shown[0].save(
                tmp, format="GIF", save_all=True, append_images=shown[1:], duration=250, loop=0
            )
        record = {
            "sequence": sequence,
            "encoder": segmenter.source.description,
            "trained": segmenter.source.trusted,
            "frames": len(clip),
            "every": every,
            "short_side": size,
            "mode": segmenter.mode,
            "commit": git_revision(),
            "iou": scores,
            "mean_iou": round(float(np.mean(list(scores.values()))), 4) if scores else None,
        }
        with atomic_path(out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{out} ({out.stat().st_size / 1024:.0f} KB): mean IoU {record['mean_iou']}")


if __name__ == "__main__":
    app()
