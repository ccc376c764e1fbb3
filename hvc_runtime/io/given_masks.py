"""The masks a run starts from: one first-frame mask file, or a folder of masks named after
frames (YouTube-VOS style: an object that first appears later gets its mask at that frame).

Either way the result is `{frame index: id mask}` at the video's size, what `segment_video`
and `Segmenter.track` take.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from hvc_runtime.io.frames import FrameSource, ImageFolderSource, frame_files
from hvc_runtime.io.masks import read_mask
from hvc_runtime.utils.errors import HvcError


def read_given_masks(
    path: Path, source: FrameSource, *, resize_mask: bool = False
) -> dict[int, np.ndarray]:
    """`path` as `{frame index: mask}` for `source`: a mask file is the first frame's; a folder's
    masks go to the frames of their names (`00017.png` → frame `00017`). The first frame must
    have a mask holding an object; every mask must name a frame of the video."""
    path = Path(path)
    if path.is_dir():
        masks = masks_for_frames(frame_files(path), source, resize_mask=resize_mask)
        if 0 not in masks:
            raise HvcError(
                f"{path}: no mask for the first frame of {source.path} (a mask named "
                f"'{_frame_name(source, 0)}' must start the run)"
            )
        first = path / _frame_name(source, 0)
    else:
        masks = {0: _fit(path, read_mask(path), source, resize_mask)}
        first = path
    if not masks[0].any():
        raise HvcError(f"{first}: mask holds no object (every pixel is background 0)")
    return masks


def masks_for_frames(
    files: list[Path], source: FrameSource, *, resize_mask: bool = False
) -> dict[int, np.ndarray]:
    """Mask files named after frames of `source` (`00017.png` → frame `00017`) as
    `{frame index: mask}`; a file naming no frame is refused. A video whose length its
    container does not state is decoded up to the last frame a mask names, no further."""
    index_of = _frame_indices(source)
    named = {file: index_of(file.stem) for file in files}
    unnamed = [file for file, index in named.items() if index is None]
    if unnamed:
        raise HvcError(
            f"{unnamed[0]}: mask names no frame of {source.path} (masks in a folder are named "
            "after the frames they annotate)"
        )
    if named and not source.has_frame(max(named.values())):
        beyond = min((f for f, k in named.items() if not source.has_frame(k)), key=named.get)
        raise HvcError(
            f"{beyond}: mask names no frame of {source.path}: it has {source.length} frames "
            f"({_frame_name(source, 0)} to {_frame_name(source, source.length - 1)})"
        )
    return {named[f]: _fit(f, read_mask(f), source, resize_mask) for f in files}


def _frame_indices(source: FrameSource) -> Callable[[str], int | None]:
    """Frame name → index (None if it names no frame): a folder's image stems, a video file's
    zero-padded indices (`00017`, whether or not the video reaches that far)."""
    if isinstance(source, ImageFolderSource):
        return {file.stem: k for k, file in enumerate(source.files)}.get
    return lambda name: int(name) if name.isdigit() and name == f"{int(name):05d}" else None


def _frame_name(source: FrameSource, index: int) -> str:
    return source.files[index].stem if isinstance(source, ImageFolderSource) else f"{index:05d}"


def _fit(path: Path, mask: np.ndarray, source: FrameSource, resize_mask: bool) -> np.ndarray:
    """The mask at the video's size: refused if it differs, unless `resize_mask`."""
    height, width = source.height, source.width
    if mask.shape == (height, width):
        return mask
    if not resize_mask:
        raise HvcError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the video is {width}x{height}",
            remedy="resize_mask",
        )
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
