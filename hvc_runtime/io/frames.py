"""Frame sources: a video file decoded frame by frame, or a folder of images.

Frames come out as H×W×3 uint8 RGB numpy arrays with a name (the image stem, or the zero-padded
index for video files), so outputs can follow the DAVIS layout. A video is never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from hvc_runtime.errors import HvcError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DEFAULT_FPS = 24.0


@dataclass
class Frame:
    index: int
    name: str
    rgb: np.ndarray
    pinned: torch.Tensor | None = None  # the same pixels in pinned memory, for async uploads


class FrameSource:
    """Common shape of frame sources: iterate frames, know size, fps and (approximate) length."""

    path: Path
    fps: float
    height: int
    width: int

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError


def read_rgb_image(path: Path) -> np.ndarray:
    """Decode an image file to RGB (PIL, as the official loader does), with a one-line error."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise HvcError(f"{path}: image not found") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HvcError(f"{path}: not a readable image ({exc})") from exc


class ImageFolderSource(FrameSource):
    """A folder of frames such as DAVIS `JPEGImages/480p/<sequence>`, in file-name order."""

    def __init__(self, path: Path, fps: float = DEFAULT_FPS) -> None:
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise HvcError(
                f"{self.path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self.fps = fps
        self.height, self.width = read_rgb_image(self.files[0]).shape[:2]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            rgb = read_rgb_image(file)
            if rgb.shape[:2] != (self.height, self.width):
                raise HvcError(
                    f"{file}: frame size {rgb.shape[1]}x{rgb.shape[0]} differs from the first "
                    f"frame's {self.width}x{self.height}"
                )
            yield Frame(index, file.stem, rgb)


class VideoFileSource(FrameSource):
    """A video file (mp4, avi, mov, ...) decoded by OpenCV one frame at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        capture = self._open()
        try:
            ok, first = capture.read()
            if not ok or first is None:
                raise HvcError(f"{self.path}: video has no decodable frames")
            self.height, self.width = first.shape[:2]
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
            self._count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()

    def _open(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise HvcError(f"{self.path}: video not found")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise HvcError(f"{self.path}: cannot open as a video (unknown format or unreadable)")
        return capture

    def __len__(self) -> int:
        """Frame count from the container; it may be approximate for some formats."""
        return max(self._count, 0)

    def __iter__(self) -> Iterator[Frame]:
        capture = self._open()
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield Frame(index, f"{index:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            capture.release()


def open_frames(path: Path) -> FrameSource:
    """A video file or a folder of images, chosen by what `path` is."""
    path = Path(path)
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise HvcError(f"{path}: no such video file or frame folder")
    return VideoFileSource(path)
