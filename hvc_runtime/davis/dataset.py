"""The DAVIS folder layout: `JPEGImages/<res>/<seq>`, `Annotations/<res>/<seq>`, `ImageSets`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hvc_runtime.io.frames import is_image_name
from hvc_runtime.utils.errors import HvcError, excerpt, listing

MASK_SUFFIX = ".png"


@dataclass(frozen=True)
class DavisDataset:
    """A DAVIS-format dataset root (DAVIS-2016 and -2017 layouts; YouTube-VOS-style too)."""

    root: Path
    resolution: str = "480p"

    def __post_init__(self) -> None:
        if not (self.root / "JPEGImages").is_dir() and not (self.root / "Annotations").is_dir():
            raise HvcError(
                f"{self.root}: not a DAVIS-format dataset (no JPEGImages/ or Annotations/)"
            )

    def _level(self, kind: str) -> Path:
        base = self.root / kind
        with_resolution = base / self.resolution
        return with_resolution if with_resolution.is_dir() else base

    @property
    def image_root(self) -> Path:
        return self._level("JPEGImages")

    @property
    def annotation_root(self) -> Path:
        return self._level("Annotations")

    def frames_dir(self, sequence: str) -> Path:
        return self.image_root / sequence

    def annotations_dir(self, sequence: str) -> Path:
        return self.annotation_root / sequence

    def split_file(self, split: str) -> Path | None:
        for folder in (self.resolution, "2017", "2016", ""):
            candidate = self.root / "ImageSets" / folder / f"{split}.txt"
            if candidate.is_file():
                return candidate
        return None

    def sequences(self, split: str | None = None) -> list[str]:
        """Sequence names from `ImageSets/.../<split>.txt`, or every annotated sequence."""
        if split is not None:
            split_list = self.split_file(split)
            if split_list is None:
                raise HvcError(f"{self.root}: no ImageSets list for split '{split}'")
            names = [line.strip() for line in split_list.read_text().splitlines() if line.strip()]
        else:
            names = sorted(p.name for p in self.annotation_root.iterdir() if p.is_dir())
        missing = [n for n in names if not self.annotations_dir(n).is_dir()]
        if missing:
            shown = listing([excerpt(name) for name in missing])  # names read from a file
            raise HvcError(f"{self.annotation_root}: no annotations for {shown}")
        return names

    def named(self, names: list[str]) -> list[str]:
        """`names` when the dataset annotates each of them, else one error naming those it
        does not (and a few it does), before any results folder is looked at."""
        unknown = [n for n in names if not self.annotations_dir(n).is_dir()]
        if unknown:
            known = sorted(p.name for p in self.annotation_root.iterdir() if p.is_dir())
            raise HvcError(
                f"{self.annotation_root}: no sequence {', '.join(unknown)} in the dataset "
                f"(it has {listing(known, 5)})"
            )
        return names

    def annotation_files(self, sequence: str) -> list[Path]:
        files = sorted(
            p for p in self.annotations_dir(sequence).glob(f"*{MASK_SUFFIX}") if is_image_name(p)
        )  # not the hidden `._00000.png` files that copying from macOS leaves beside each mask
        if not files:
            raise HvcError(f"{self.annotations_dir(sequence)}: no annotation PNGs")
        return files
