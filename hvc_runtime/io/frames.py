"""Frame sources: a video file decoded frame by frame, or a folder of images.

Frames come out as H×W×3 uint8 RGB numpy arrays with a name (the image stem, or the zero-padded
index for video files), so outputs can follow the DAVIS layout. A video is never held in memory.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from hvc_runtime.io.containers import states_frame_count
from hvc_runtime.utils.errors import HvcError, HvcWarning, listing

# FFmpeg logs its own view of a file it cannot open ("moov atom not found") on stderr before
# our one-line error says the same; quiet unless the user asked for its log
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# what copying a folder between operating systems leaves beside the frames (AppleDouble `._*`
# and every other hidden file start with a dot)
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}
DEFAULT_FPS = 24.0
COUNT_TOLERANCE = 0.02  # share of a stated frame count that decoding may fall short of


@dataclass
class Frame:
    """One frame: H×W×3 uint8 RGB on the host (`rgb`), and/or the same pixels as a tensor
    (`pixels`) in pinned host memory or already on the GPU, for uploads without a copy."""

    index: int
    name: str
    rgb: np.ndarray | None
    pixels: torch.Tensor | None = None

    def host_rgb(self) -> np.ndarray:
        """The pixels on the host (downloaded once if the frame was decoded on the GPU)."""
        if self.rgb is None:
            self.rgb = self.pixels.cpu().numpy()
        return self.rgb

    def input(self) -> np.ndarray | torch.Tensor:
        """What the segmenter should take: the tensor when there is one."""
        return self.pixels if self.pixels is not None else self.rgb


class FrameSource:
    """Common shape of frame sources: iterate frames, know size, fps and, where it is known
    without decoding, the number of frames."""

    path: Path
    fps: float
    height: int
    width: int

    @property
    def length(self) -> int | None:
        """The number of frames; None where only decoding the video would tell."""
        raise NotImplementedError

    def has_frame(self, index: int) -> bool:
        """Whether the source has a frame `index` (0-based)."""
        return self.length is not None and 0 <= index < self.length

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


def _check_image_header(path: Path) -> None:
    """Read only the header: cheap for thousands of frames, and a file that is no image at
    all (empty, or another kind of file under an image name) is named before any work."""
    try:
        with Image.open(path):
            pass
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HvcError(f"{path}: not a readable image ({exc})") from exc


def _natural_key(path: Path) -> list[int | str]:
    """'frame10' after 'frame9': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def is_image_name(path: Path) -> bool:
    """An image by its suffix, and neither hidden nor a file the operating system keeps."""
    name = path.name
    return (
        path.suffix.lower() in IMAGE_SUFFIXES
        and not name.startswith(".")
        and name.lower() not in SYSTEM_FILES
    )


def frame_files(folder: Path) -> list[Path]:
    """The frames of a folder in video order, refusing orders that cannot be right.

    Hidden files (`._00001.jpg` from macOS, `.DS_Store`) and files that are not images are
    ignored, with one warning saying how many. Names numbered without zero padding (1, 2, ...,
    10) sort wrongly as text: they are taken in numeric order, with a warning. Two files of one name (00001.jpg and 00001.png) would
    write one output mask: refused."""
    entries = [p for p in folder.iterdir() if p.is_file()]
    files = [p for p in entries if is_image_name(p)]
    ignored = sorted(p.name for p in entries if not is_image_name(p))
    if ignored:
        warnings.warn(
            f"{folder}: ignored {len(ignored)} file{'s' if len(ignored) > 1 else ''} that "
            f"{'are' if len(ignored) > 1 else 'is'} not frames ({listing(ignored)})",
            HvcWarning,
            stacklevel=3,
        )
    if not files:
        raise HvcError(f"{folder}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    twins = sorted(stem for stem, n in Counter(p.stem for p in files).items() if n > 1)
    if twins:
        raise HvcError(
            f"{folder}: several images named {twins[0]} (e.g. .jpg and .png): which is the "
            "frame is ambiguous; keep one"
        )
    as_text = sorted(files, key=lambda path: path.stem)  # stems are unique (checked above)
    numeric = sorted(files, key=_natural_key)
    if numeric != as_text:
        warnings.warn(
            f"{folder}: frame names are not zero-padded; taking them in numeric order "
            f"({numeric[0].name}, {numeric[1].name}, ..., {numeric[-1].name})",
            HvcWarning,
            stacklevel=3,
        )
    return numeric


class ImageFolderSource(FrameSource):
    """A folder of frames such as DAVIS `JPEGImages/480p/<sequence>`, in numeric name order."""

    def __init__(self, path: Path, fps: float = DEFAULT_FPS) -> None:
        self.path = Path(path)
        self.files = frame_files(self.path)
        self.fps = fps
        for file in self.files[1:]:
            _check_image_header(file)  # a file that is no image fails now, not mid-run
        self.height, self.width = read_rgb_image(self.files[0]).shape[:2]

    @property
    def length(self) -> int:
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
    """A video file (mp4, avi, mov, ts, mkv, raw .h264 / .mjpeg streams, ...) decoded by
    OpenCV one frame at a time.

    Its length is the count its container states (MP4/MOV index, AVI header), or unknown until
    it has been decoded: other containers only allow a guess (see `containers`). Where the
    count is stated, a video that stops decoding earlier (cut short, corrupt) is an error at
    its end, or a warning with `allow_partial`."""

    def __init__(self, path: Path, allow_partial: bool = False) -> None:
        self.path = Path(path)
        self.allow_partial = allow_partial
        capture = self._open()
        try:
            ok, first = capture.read()
            if not ok or first is None:
                raise HvcError(f"{self.path}: video has no decodable frames")
            self.height, self.width = first.shape[:2]
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
            declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        finally:
            capture.release()
        stated = states_frame_count(self.path) and np.isfinite(declared) and declared > 0
        self._stated = int(declared) if stated else None
        self._decoded: int | None = None  # known once the video has been decoded to its end

    def _open(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise HvcError(f"{self.path}: video not found")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise HvcError(f"{self.path}: cannot open as a video (unknown format or unreadable)")
        return capture

    @property
    def length(self) -> int | None:
        """The frames decoded, once the video has been decoded to its end; before, the count
        its container states, or None."""
        return self._decoded if self._decoded is not None else self._stated

    def has_frame(self, index: int) -> bool:
        """Where the length is unknown, the video is decoded up to frame `index` (no further:
        a mask for frame 17 costs 18 frames' decoding, not the whole video's)."""
        if self.length is not None:
            return super().has_frame(index)
        capture = self._open()
        try:
            reached = 0
            while reached <= index and capture.grab():
                reached += 1
        finally:
            capture.release()
        if reached <= index:
            self._decoded = reached
        return reached > index

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
        self._check_complete(index)
        self._decoded = index

    def _check_complete(self, decoded: int) -> None:
        """Edit lists and some writers make a stated count a frame or two off: a shortfall
        within that is a warning, more is a cut-short file. Without a stated count nothing
        tells a cut-short video from a short one."""
        if self._stated is None or decoded >= self._stated:
            return
        missing = self._stated - decoded
        problem = (
            f"{self.path}: decoding stopped after {decoded} of the {self._stated} frames the file "
            "declares"
        )
        if missing > max(2, COUNT_TOLERANCE * self._stated) and not self.allow_partial:
            raise HvcError(f"{problem} (cut short or corrupt)", remedy="allow_partial")
        warnings.warn(f"{problem}; kept the {decoded} decoded frames", HvcWarning, stacklevel=2)


def open_frames(path: Path, *, allow_partial: bool = False) -> FrameSource:
    """A video file or a folder of images, chosen by what `path` is; `allow_partial` accepts a
    video that stops decoding before its declared end (with a warning)."""
    path = Path(path)
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise HvcError(f"{path}: no such video file or frame folder")
    if _is_still_image(path):
        raise HvcError(
            f"{path}: is a single image, not a video; give a video file or the folder of "
            f"frames it belongs to ({path.parent})"
        )
    return VideoFileSource(path, allow_partial)


def _is_still_image(path: Path) -> bool:
    """An image file (by its content, whatever its name): OpenCV would read it as a one-frame
    video, which is never what was meant. Animated images (GIF) are videos, and so is an MJPEG
    stream (JPEG images one after another), which PIL reads as its first image."""
    try:
        with Image.open(path) as image:
            if getattr(image, "is_animated", False):
                return False
    except (UnidentifiedImageError, OSError, SyntaxError):
        return False
    capture = cv2.VideoCapture(str(path))
    try:
        return not (capture.grab() and capture.grab())
    finally:
        capture.release()
