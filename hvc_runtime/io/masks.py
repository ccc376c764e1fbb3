"""Object-id masks: read palette, grey-level and DAVIS-2016 binary PNGs; write DAVIS palette PNGs."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from hvc_runtime.utils.errors import HvcError


@functools.cache
def davis_palette() -> tuple[int, ...]:
    """The DAVIS annotation palette, flat as PIL wants it.

    Ids 0-21 take the bit-interleaved PASCAL colours with 191 where PASCAL has 192; ids 22-255 are
    the grey (i, i, i), as in the palettes of the DAVIS annotation files.
    """
    colours: list[int] = []
    for index in range(256):
        if index >= 22:
            colours.extend((index, index, index))
            continue
        rgb = [0, 0, 0]
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colours.extend(191 if c == 192 else c for c in rgb)
    return tuple(colours)


LOSSY_FORMATS = {"JPEG", "MPO", "JPEG2000"}
# image modes whose values are ids: palette, grey, 1-bit, 16/32-bit integers (ids up to 255)
ID_MODES = {"P", "L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "I;16N"}
NOT_IDS = {  # the modes most often met that hold something else than ids
    "F": "32-bit float: values between ids would be truncated",
    "RGB": "colours are not ids",
    "RGBA": "colours are not ids",
}


def read_mask(path: Path) -> np.ndarray:
    """Read an id mask as H×W uint8 (0 = background, 1..255 = objects).

    Palette PNGs give their indices, grey-level (and 16-bit integer) PNGs their values; a mask
    holding only 0 and 255 (or 0 and 65535) is a DAVIS-2016 binary mask and becomes ids 0/1.
    Refused, because the ids would be wrong: colour and float images (colours are not ids, a
    float between ids has none), lossy formats (JPEG invents ids along every edge), and grey
    0/255 masks with soft (anti-aliased) edges, whose in-between values are no ids.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if image.format in LOSSY_FORMATS:
                raise HvcError(
                    f"{path}: {image.format} is lossy, its compression changes ids along object "
                    "edges; save the mask as PNG"
                )
            if mode not in ID_MODES:
                why = f" ({NOT_IDS[mode]})" if mode in NOT_IDS else ""
                raise HvcError(
                    f"{path}: {mode} image is not an id mask{why}; expected a palette (P), "
                    "grey-level (L), 1-bit or 16-bit integer PNG whose values are object ids"
                )
            if mode == "LA":
                image = image.getchannel("L")  # the ids; the alpha is no part of them
            array = np.asarray(image)
    except FileNotFoundError as exc:
        raise HvcError(f"{path}: mask not found") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HvcError(f"{path}: not a readable mask image ({exc})") from exc
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.ndim != 2:
        raise HvcError(f"{path}: mask must be a single-channel image, got shape {array.shape}")
    if array.dtype.itemsize > 1 and set(np.unique(array).tolist()) == {0, 65535}:
        return (array > 0).astype(np.uint8)  # a 16-bit binary mask, as 0/255 is in 8 bits
    if array.max(initial=0) > 255:
        raise HvcError(f"{path}: mask ids above 255 are not supported (max {array.max()})")
    array = array.astype(np.uint8)
    values = np.unique(array)
    if values.size == 2 and values[0] == 0 and values[1] == 255:
        return (array > 127).astype(np.uint8)
    if mode != "P" and values[-1] == 255 and _soft_edges(array, values):
        raise HvcError(
            f"{path}: grey mask mixes 255 with {values.size - 2} other values on a thin band "
            "around it: a 0/255 mask with soft (anti-aliased) edges; threshold it to 0/255"
        )
    return array


SOFT_LEVELS = 8  # distinct in-between values an anti-aliased edge makes, at least
SOFT_BAND = 8  # pixels from the 255 region within which an edge's in-between values lie


def _soft_edges(array: np.ndarray, values: np.ndarray) -> bool:
    """A 0/255 mask blurred at its edges: many in-between levels, all hugging the 255 region.
    Masks with ids 1..N and 255 as void have a few ids covering areas of their own instead."""
    between = (array > 0) & (array < 255)
    if values[(values > 0) & (values < 255)].size < SOFT_LEVELS:
        return False
    solid = (array == 255).astype(np.uint8)
    near = cv2.dilate(solid, np.ones((2 * SOFT_BAND + 1,) * 2, np.uint8)).astype(bool)
    return float(near[between].mean()) >= 0.95


def write_palette_png(path: Path, ids: np.ndarray) -> None:
    """Write an id map as an indexed PNG with the DAVIS palette."""
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(davis_palette())
    image.save(path, format="PNG")
