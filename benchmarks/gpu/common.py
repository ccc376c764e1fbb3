"""What the GPU runs `benchmarks.gpu.train` and `benchmarks.gpu.cause` share.

A run may be stopped at a time limit, so its record is one JSON file, rewritten atomically each
time a part finishes: whatever stops it, the parts that finished are on disk. On a machine the
project was copied to without `.git`, the commit comes in through `HVC_COMMIT` (the `COMMIT` file
`benchmarks.gpu.bundle unpack` writes). A smoke mode runs the same code on a tiny DAVIS tree on a
CPU.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.environment import describe
from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import evaluate
from hvc_runtime.davis.propagate import propagate_sequence
from hvc_runtime.encoder.network import IMAGENET_MEAN, IMAGENET_STD, StrideEightResNet
from hvc_runtime.io.frames import frame_files, read_rgb_image
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError
from hvc_train.health import HealthFigures, measure

DAVIS2016 = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis2016"
YARDSTICK = ("blackswan", 0)  # the health probe: this frame at its own 854×480
SMOKE_VIDEOS = {"train": 2, "val": 2}  # sequences of each split in the smoke tree
SMOKE_FRAMES = 4  # frames of each smoke sequence (J&F scores all but the first and last)
SMOKE_SHORT_SIDE = 96  # smoke evaluations run at this short side (masks scored at full size)


class Record:
    """A JSON object on disk, rewritten atomically after every change, so a run stopped at its
    limit keeps every part that finished."""

    def __init__(self, path: Path, **fields: Any) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {}
        self.update(**fields)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, indent=1) + "\n")

    def append(self, key: str, item: Any) -> None:
        self.update(**{key: [*self.data.get(key, []), item]})


def run_environment(device: torch.device, smoke: bool) -> dict[str, Any]:
    """Where and when the run ran (device, library versions, commit)."""
    info = describe(device)  # its git_revision is `$HVC_COMMIT` in a copy without `.git`
    return {"environment": info, "smoke": smoke, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ")}


def yardstick_probe(davis: Path) -> torch.Tensor:
    """Blackswan frame 0 at its own 854×480, ImageNet-normalised: the probe on which the
    collapsed run (rank 2.6), the training init (7.0) and a random encoder (33.9) were
    measured, so every run's figures compare with those."""
    name, index = YARDSTICK
    frames = frame_files(DavisDataset(davis).frames_dir(name))
    rgb = torch.from_numpy(read_rgb_image(frames[index])).permute(2, 0, 1).float()[None] / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


def yardstick_health(
    trunk: StrideEightResNet,
    probe: torch.Tensor,
    initial: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """`hvc_train.health` figures of `trunk` on the yardstick probe, as flat scalars."""
    device = next(trunk.parameters()).device
    figures: HealthFigures = measure(trunk, probe.to(device), initial)
    return figures.scalars()


def dev_jf(
    encoder: Path, davis: Path, device: str, precision: str, short_side: int | None = None
) -> dict[str, Any]:
    """J&F (0-100) of an exported encoder on the val sequences of `davis` (DAVIS-2016: the 5
    dev videos), fast mode, as `hvc-eval --run` computes it, with per-sequence J and F."""
    dataset = DavisDataset(davis)
    names = dataset.sequences("val")
    segmenter = Segmenter.from_checkpoint(
        encoder, device=device, precision=precision, mode="fast", short_side=short_side
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hvc-dev-jf-") as tmp:
        for name in names:
            propagate_sequence(dataset, name, segmenter, Path(tmp))
        evaluation = evaluate(dataset, Path(tmp), names)
    return {
        "jf": 100 * evaluation.jf_mean,
        "j": 100 * evaluation.j_mean,
        "f": 100 * evaluation.f_mean,
        "per_sequence": {
            name: {"j": 100 * j, "f": 100 * f} for name, (j, f) in evaluation.per_sequence().items()
        },
        "precision": precision,
        "mode": "fast",
        "short_side": short_side,
        "seconds": time.perf_counter() - began,
    }


def split_names(davis: Path, split: str) -> list[str]:
    """The sequences of `ImageSets/480p/<split>.txt` (a bundle holds no train masks, so
    `DavisDataset.sequences`, which requires them, is for val only)."""
    listing = Path(davis) / "ImageSets" / "480p" / f"{split}.txt"
    return [line.strip() for line in listing.read_text().splitlines() if line.strip()]


def smoke_tree(source: Path, target: Path) -> Path:
    """A tiny DAVIS-format tree of links into `source`: the first sequences of each split
    (`SMOKE_VIDEOS`), their first `SMOKE_FRAMES` frames, and the val masks; the yardstick
    sequence is always among the val ones. Smoke modes run the real code paths on it in seconds."""
    dataset = DavisDataset(source)
    for split, count in SMOKE_VIDEOS.items():
        names = split_names(source, split)
        if split == "val":
            names = [YARDSTICK[0], *(n for n in names if n != YARDSTICK[0])]
        names = names[:count]
        listing = target / "ImageSets" / "480p" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{name}\n" for name in names))
        for name in names:
            kinds = {"JPEGImages": frame_files(dataset.frames_dir(name))}
            if split == "val":
                kinds["Annotations"] = dataset.annotation_files(name)
            for kind, files in kinds.items():
                folder = target / kind / "480p" / name
                folder.mkdir(parents=True, exist_ok=True)
                for file in files[:SMOKE_FRAMES]:
                    (folder / file.name).symlink_to(file.resolve())
    return target


def require_davis(root: Path) -> Path:
    """`root` if it holds a DAVIS-2016 tree with train and val lists, else one clear error."""
    for split in ("train", "val"):
        if not (Path(root) / "ImageSets" / "480p" / f"{split}.txt").is_file():
            raise HvcError(f"{root}: no DAVIS-2016 tree (ImageSets/480p/{split}.txt missing)")
    return Path(root)
