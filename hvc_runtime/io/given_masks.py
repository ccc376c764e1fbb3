"""The masks a run starts from: one first-frame mask file, or a folder of masks named after
frames (YouTube-VOS style: an object that first appears later gets its mask at that frame).

Either way the result is `{frame index: id mask}` at the video's size, what `segment_video`
and `Segmenter.track` take.
"""

from __future__ import annotations

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
                f"'{_first_name(source)}' must start the run)"
            )
        first = path / _first_name(source)
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
    `{frame index: mask}`; a file naming no frame is refused."""
    indices = _frame_indices(source)
    masks = {}
    for file in files:
        if file.stem not in indices:
            raise HvcError(
                f"{file}: mask names no frame of {source.path} (masks in a folder are named "
                "after the frames they annotate)"
            )
        masks[indices[file.stem]] = _fit(file, read_mask(file), source, resize_mask)
    return masks


def _frame_indices(source: FrameSource) -> dict[str, int]:
    """Frame names → indices: a folder's image stems, a video file's zero-padded indices."""
    if isinstance(source, ImageFolderSource):
        return {file.stem: k for k, file in enumerate(source.files)}
    return {f"{k:05d}": k for k in range(len(source))}


def _first_name(source: FrameSource) -> str:
    return source.files[0].stem if isinstance(source, ImageFolderSource) else "00000"


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
