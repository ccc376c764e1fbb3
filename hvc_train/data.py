"""Training images: frames of videos (DAVIS / YouTube-VOS layout) and plain image trees.

An epoch takes at most `frames_per_video` random frames of each video (the official sampler) and
every image of the image trees, `repeat` times, shuffled. Each sample is a function of (seed,
epoch, position), so a resumed run sees exactly the samples an uninterrupted run would, whatever
the worker count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler

from hvc_runtime.io.frames import is_image_name
from hvc_runtime.utils.errors import HvcError
from hvc_train.augment import recolour
from hvc_train.crops import crop_pair

log = logging.getLogger(__name__)
MAX_SKIPS = 16


@dataclass(frozen=True)
class FrameIndex:
    """Image files and the group (video) each belongs to; image-tree files are groups of one."""

    files: list[Path]
    groups: list[list[int]]
    sampled_groups: list[bool]  # True: a video, sample at most N frames of it per epoch


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_name(p) and p.is_file())


def _video_root(root: Path) -> Path:
    images = root / "JPEGImages"
    if not images.is_dir():
        raise HvcError(f"{root}: not a video dataset (no JPEGImages/ folder)")
    resolutions = [
        p for p in images.iterdir() if p.is_dir() and p.name in ("480p", "1080p", "Full-Resolution")
    ]
    return resolutions[0] if resolutions else images


def _split_names(root: Path, split: str) -> list[str]:
    """The videos of ImageSets list `split`; a name two lists share (DAVIS-2017 keeps 2016/ and
    2017/ lists of the same names) must be qualified (`2017/train`) rather than guessed."""
    lists = sorted(root.glob(f"ImageSets/**/{split}.txt"))
    if not lists:
        raise HvcError(f"{root}: no ImageSets list for split '{split}'")
    if len(lists) > 1:
        found = ", ".join(str(p.relative_to(root / "ImageSets").with_suffix("")) for p in lists)
        raise HvcError(
            f"{root}: split '{split}' matches several ImageSets lists ({found}); name one"
        )
    return [n.strip() for n in lists[0].read_text().splitlines() if n.strip()]


def index_videos(root: Path, split: str | None = None) -> FrameIndex:
    """DAVIS (`JPEGImages/480p/<video>`) or YouTube-VOS (`JPEGImages/<video>`) frame folders."""
    base = _video_root(Path(root))
    if split is not None:
        names = _split_names(Path(root), split)
    else:
        names = sorted(p.name for p in base.iterdir() if p.is_dir())
    files: list[Path] = []
    groups: list[list[int]] = []
    empty: list[str] = []
    for name in names:
        frames = _images_under(base / name)
        if frames:
            groups.append(list(range(len(files), len(files) + len(frames))))
            files.extend(frames)
        else:
            empty.append(name)
    if split is not None and empty:  # a listed video without frames would shrink the data unnoticed
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise HvcError(f"{root}: split '{split}' lists videos with no frames under {base}: {shown}")
    if not files:
        raise HvcError(f"{root}: no frames found under {base}")
    return FrameIndex(files, groups, [True] * len(groups))


def index_images(root: Path) -> FrameIndex:
    """Any tree of JPEG/PNG images (COCO-, VOC-, MSRA10k-style folders)."""
    root = Path(root)
    if not root.is_dir():
        raise HvcError(f"{root}: image folder not found")
    files = _images_under(root)
    if not files:
        raise HvcError(f"{root}: no images found")
    return FrameIndex(files, [[i] for i in range(len(files))], [False] * len(files))


def merge(indices: Sequence[FrameIndex]) -> FrameIndex:
    files: list[Path] = []
    groups: list[list[int]] = []
    sampled: list[bool] = []
    for index in indices:
        offset = len(files)
        files.extend(index.files)
        groups.extend([[offset + i for i in g] for g in index.groups])
        sampled.extend(index.sampled_groups)
    return FrameIndex(files, groups, sampled)


def epoch_order(
    index: FrameIndex, frames_per_video: int, seed: int, epoch: int, repeat: int = 1
) -> list[int]:
    """The official sampler: ≤N random frames per video, every image, all shuffled. With
    `repeat` R the data is taken R times, exactly as if its roots were listed R times."""
    rng = np.random.default_rng([seed, epoch, 0x5A3])
    chosen: list[int] = []
    for _ in range(repeat):
        for group, sampled in zip(index.groups, index.sampled_groups, strict=True):
            if sampled and len(group) > frames_per_video:
                chosen.extend(int(i) for i in rng.choice(group, frames_per_video, replace=False))
            else:
                chosen.extend(group)
    return [chosen[i] for i in rng.permutation(len(chosen))]


Item = tuple[int, int, int]  # (epoch, position, file index): what a sample is a function of


class BatchStream(Sampler[list[Item]]):
    """Batches of one rank's items from (epoch, start) on, epoch after epoch, without end.

    One DataLoader iterates it for the whole run, so its workers live across epochs and
    prefetch over epoch boundaries. A batch never spans two epochs (the last one of an epoch
    may be short, as in the official loader), so batch k of a run is the same whether or not
    the run was resumed. Ranks take interleaved positions; an epoch's order is padded by
    wrapping so all ranks see the same number of samples, as DistributedSampler does.
    """

    def __init__(
        self,
        index: FrameIndex,
        frames_per_video: int,
        seed: int,
        batch_size: int,
        repeat: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.index = index
        self.frames_per_video = frames_per_video
        self.seed = seed
        self.batch_size = batch_size
        self.repeat = repeat
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def per_rank(self) -> int:
        """Samples per rank and epoch (the same every epoch: only which frames changes)."""
        total = sum(
            min(len(group), self.frames_per_video) if sampled else len(group)
            for group, sampled in zip(self.index.groups, self.index.sampled_groups, strict=True)
        )
        return -(-total * self.repeat // self.world_size)

    def steps_per_epoch(self) -> int:
        return -(-self.per_rank() // self.batch_size)

    def epoch_items(self, epoch: int) -> list[Item]:
        order = epoch_order(self.index, self.frames_per_video, self.seed, epoch, self.repeat)
        padded = self.per_rank() * self.world_size
        order = (order * (padded // len(order) + 1))[:padded]
        mine = order[self.rank :: self.world_size]
        return [(epoch, k * self.world_size + self.rank, f) for k, f in enumerate(mine)]

    def __iter__(self) -> Iterator[list[Item]]:
        epoch, start = self.epoch, self.start
        while True:
            items = self.epoch_items(epoch)
            for first in range(start, len(items), self.batch_size):
                yield items[first : first + self.batch_size]
            epoch, start = epoch + 1, 0


class CropPairDataset(Dataset):
    """(view1, view2, box1, box2, skipped) for an item; unreadable files are skipped."""

    def __init__(
        self,
        index: FrameIndex,
        seed: int,
        size: int = 256,
        min_scale: float = 0.0,
        max_scale: float = 1.0,
        color_jitter: float = 0.0,
        grayscale: float = 0.0,
    ):
        self.index = index
        self.seed = seed
        self.size = size
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.color_jitter = color_jitter
        self.grayscale = grayscale
        self._reported: set[Path] = set()  # unreadable files already named (per process)

    def __len__(self) -> int:
        return len(self.index.files)

    def __getitem__(self, item: Item):
        epoch, position, file_index = item
        rng = np.random.default_rng([self.seed, epoch, position])
        files = self.index.files
        tries = min(MAX_SKIPS, len(files))  # each file once: a small dataset wraps around
        for skipped in range(tries):
            path = files[(file_index + skipped) % len(files)]
            try:
                with Image.open(path) as image:
                    rgb = np.asarray(image.convert("RGB"))
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                if path not in self._reported:  # one line per file, however often sampled
                    self._reported.add(path)
                    log.warning("skipping unreadable image %s (%s)", path, exc)
                continue
            view1, view2, box1, box2 = crop_pair(
                rgb, rng, self.size, self.min_scale, self.max_scale
            )
            view1, view2 = (
                recolour(view, rng, self.color_jitter, self.grayscale) for view in (view1, view2)
            )
            return view1, view2, box1, box2, torch.tensor(skipped)
        if tries == len(files):
            raise HvcError(f"{files[file_index]}: none of the {len(files)} images can be read")
        raise HvcError(f"{files[file_index]}: {MAX_SKIPS} unreadable images in a row")
